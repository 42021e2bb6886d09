"""The feature visualisations of a class (``RUN/fviz/<stem>.h5``, MACO) as pictures of the atlas.

Each image is written once, under ``img/<stem>/`` (``fviz_c<k>`` per concept, ``fviz_s<node>`` per sub-concept of a
recursive concepts file, ``fviz_logit`` for the class logit),
as the image itself and as the image seen through its transparency map (MACO's way of showing it: the pixels the
objective looked at opaque, the rest transparent; :func:`concepts.fviz.images.rgba`). A dataset-scope class views
atoms of a shared dictionary: its concept k is atom ``state/atoms[k]``, and each atom has one image, under
``img/atoms/`` (the first class whose fviz file has it writes it; the others link to it).

A file made from other concepts than the ones on disk (the concepts were recomputed after ``concepts fviz``) is
not shown: :func:`class_visualisations` says why instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ArtefactError
from ..schema.classdata import ClassData
from ..schema.hdf5 import identity
from .views import Visualisation

#: the site folder of a dataset-scope run's atom images (one image per atom, shared by the classes)
ATOMS_FOLDER = "img/atoms"
#: the largest side written: twice the largest displayed (224 px on the concept page), sharp on 2x screens; a
#: larger visualisation (fviz's default is 512 px) is downscaled, a smaller one never upscaled
MAX_SIDE = 448


@dataclass
class ClassVisualisations:
    """What the pages show of a class's feature visualisations."""

    concepts: dict[int, Visualisation] = field(default_factory=dict)  # concept -> its image
    subconcepts: dict[int, Visualisation] = field(default_factory=dict)  # sub-concept node id -> its image
    logit: Visualisation | None = None
    note: str = ""  # why none is shown although the run has a file ('' otherwise)


def _atoms(data: ClassData, run: Path) -> np.ndarray | None:
    """The shared-dictionary atom of each concept of a dataset-scope class (None at class scope)."""
    if str(data.concept_attrs.get("scope", "class")) != "dataset":
        return None
    from ..schema.run import RunFolder

    atoms = RunFolder(run).concepts(data.class_id, coefficients=False).state.get("atoms")
    return None if atoms is None else np.asarray(atoms, np.int64)


class VisualisationWriter:
    """Writes the pictures of feature visualisations under ``site`` (WebP, or PNG where the atlas writes JPEG:
    the transparency needs an alpha channel). URLs are from the site root."""

    def __init__(self, site: Path | None, image_format: str = "webp", quality: int = 80):
        self.site = Path(site) if site is not None else None
        self.ext = "png" if image_format == "jpeg" else "webp"  # AVIF pictures: the fviz images stay WebP
        self.quality = int(quality)
        self.shared: dict[str, Visualisation] = {}  # atom image url -> its view (written by the first class)

    def _save(self, url: str, picture: Image.Image) -> None:
        if self.site is None:
            return
        path = self.site / url
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.ext == "webp":  # a smooth transparency map survives lossy alpha (half the bytes of lossless)
            picture.save(path, format="WEBP", quality=self.quality, method=3, alpha_quality=60)
        else:
            picture.save(path, format="PNG")

    def exists(self, url: str) -> bool:
        return self.site is not None and (self.site / url).is_file()

    def write(self, folder: str, name: str, image: np.ndarray, transparency: np.ndarray) -> tuple[str, str]:
        """``(image url, transparency url)`` of one visualisation (written unless already there)."""
        from ..fviz.images import rgba

        plain, seen = f"{folder}/{name}.{self.ext}", f"{folder}/{name}_alpha.{self.ext}"
        if not self.exists(plain):
            for url, picture in ((plain, Image.fromarray(np.asarray(image, np.uint8), "RGB")),
                                 (seen, Image.fromarray(rgba(image, transparency), "RGBA"))):
                if max(picture.size) > MAX_SIDE:
                    picture = picture.resize((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
                self._save(url, picture)
        return plain, seen


def _caption(record, row: int, excites: bool, made_for: str | None) -> str:
    """What the image is and whether it passes the fviz stage's check (see ``FvizRecord.excites``); ``made_for``:
    the class whose fviz file a shared atom's image comes from (its measures are on that class's rows)."""
    percentile = float(record.percentile[row])
    whose = f"{made_for}'s" if made_for else "the class's"
    text = f"MACO image of the shared atom, made with {made_for}'s photos" if made_for else "MACO image"
    if np.isfinite(percentile):
        text += f"; its coefficient tops {percentile:.0f}% of {whose} rows"
    return text + ("; passes the check" if excites else "; fails the check")


def _subconcept_views(record, data: ClassData, writer: VisualisationWriter) -> dict[int, Visualisation]:
    """node id -> the view of its image (empty without sub-concept images)."""
    sub = record.subconcepts
    if sub is None:
        return {}
    excited = sub.excites()
    out = {}
    for row, node in enumerate(sub.node.tolist()):
        image, seen = writer.write(f"img/{data.stem}", f"fviz_s{int(node)}", sub.images[row], sub.transparency[row])
        percentile = float(sub.percentile[row])
        caption = "MACO image"
        if np.isfinite(percentile):
            caption += f"; its coefficient tops {percentile:.0f}% of the rows it was fitted on"
        caption += "; passes the check against its siblings" if excited[row] else "; fails the check against its siblings"
        out[int(node)] = Visualisation(image, seen, caption, bool(excited[row]))
    return out


def class_visualisations(data: ClassData, run: Path, writer: VisualisationWriter | None) -> ClassVisualisations:
    """The visualisations of a class's concepts and logit (empty when the run has no fviz file for it).

    ``writer=None``: the views only (URLs as they would be), nothing written."""
    from ..schema.fviz import read_fviz

    path = data.paths.get("fviz")
    if path is None or not Path(path).is_file():
        return ClassVisualisations()
    try:
        record = read_fviz(path)
    except (ArtefactError, OSError) as exc:
        return ClassVisualisations(note=f"the feature visualisations could not be read ({exc})")
    made_from = (record.attrs.get("inputs") or {}).get("factorize") or {}
    if made_from.get("creation_id") and made_from["creation_id"] != identity(data.concept_attrs):
        return ClassVisualisations(note="the feature visualisations were made from earlier concepts of this class "
                                        "(rerun `concepts fviz`)")
    rows = record.concept_rows()
    if len(rows) != data.n_concepts:
        return ClassVisualisations(note=f"the feature visualisations are of {len(rows)} concepts, the class has "
                                        f"{data.n_concepts} (rerun `concepts fviz`)")
    writer = writer or VisualisationWriter(None)
    atoms = _atoms(data, run)
    excites = record.excites()
    out = ClassVisualisations()
    for k, row in enumerate(rows):
        if row < 0:
            continue
        if atoms is not None:  # one image per atom: the first class's
            url = f"{ATOMS_FOLDER}/a{int(atoms[k])}.{writer.ext}"
            if url not in writer.shared:
                image, seen = writer.write(ATOMS_FOLDER, f"a{int(atoms[k])}", record.images[row],
                                           record.transparency[row])
                writer.shared[url] = Visualisation(image, seen, _caption(record, int(row), bool(excites[k]),
                                                                         data.class_name), bool(excites[k]))
            out.concepts[k] = writer.shared[url]
            continue
        image, seen = writer.write(f"img/{data.stem}", f"fviz_c{k}", record.images[row], record.transparency[row])
        out.concepts[k] = Visualisation(image, seen, _caption(record, int(row), bool(excites[k]), None),
                                        bool(excites[k]))
    out.subconcepts = _subconcept_views(record, data, writer)
    logit = record.logit_image
    if logit is not None:
        image, seen = writer.write(f"img/{data.stem}", "fviz_logit", *logit)
        out.logit = Visualisation(image, seen, "MACO visualisation of the class logit: an image optimised to raise "
                                               f"the logit of {data.class_name}")
    return out
