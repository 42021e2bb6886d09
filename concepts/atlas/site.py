"""The static atlas website: ``RUN/atlas/index.html``, a page per class, per concept and per image, pictures,
local CSS/JS, and (``figures``) figures for papers.

The site has no server code and no external resource: every link is relative, so it opens from ``file://`` as
well as from any static server. The folder is built aside and swapped in at the end (a failed build leaves the
old one).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ConceptsError
from ..runner import say
from ..schema import replace_folder
from ..schema.classdata import load_class
from ..schema.hdf5 import temporary_name
from ..schema.locks import artefact_lock
from .alignment import HeadLoader
from .classpage import ClassContext, build_class_view, read_run_labels
from .layout import crop_style  # noqa: F401 (kept importable from here)
from .dictionary import DictionaryPages
from .layers import LayerSwitch, SiteNav, atlas_layers
from .pictures import PhotoStore, picture_format
from .render import Pages
from .runindex import RunIndex
from .visualisations import VisualisationWriter

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC = PACKAGE_DIR / "static"


def build_atlas(run: str | os.PathLike, *, config=None, out: str | os.PathLike | None = None,
                progress: bool = True, **settings) -> Path:
    """Build the static atlas of a run and return the path of its ``index.html``.

    Reads ``RUN/activations``, ``RUN/concepts`` and ``RUN/importance`` and writes ``RUN/atlas/`` (or ``out``):
    ``index.html`` (every class: filter, sort, state kept in the URL), ``classes/<stem>.html`` (what the concepts
    explain of the logit, the fit and fidelity, importance by each method with its confidence intervals, concept
    cards with their top crops, similar concepts, alignment with the head's classes, in-class concept
    similarity, the most sure / wrong / least sure images, the 2-D image map), ``classes/<stem>/c<k>.html`` per
    concept, ``classes/<stem>/image.html?i=<n>`` per image (one page per class, drawn in the browser from
    ``classes/<stem>/images.js``), ``img/<stem>/`` (each photo and crop once), and with ``figures`` the figures
    of :func:`concepts.atlas.figures.write_class_figures`.
    ``settings``: keywords of the ``atlas`` section (:class:`~concepts.settings.AtlasSettings`) and ``classes``.
    """
    from ..settings import stage_config

    cfg = stage_config("atlas", config, **settings)
    classes = list(cfg.data.classes) if cfg.data.classes else None
    run = Path(run)
    if not run.is_dir():
        raise ConceptsError(f"run folder {run} does not exist")
    layers = atlas_layers(run, cfg.model.layer, classes)
    site = Path(out) if out is not None else run / "atlas"
    if site.exists() and any(site.iterdir()) and not (site / "static" / "atlas.js").exists():
        raise ConceptsError(f"{site} exists and is not an atlas; choose an empty or new folder for the atlas")
    with artefact_lock(site, say=lambda m: say(m, progress)):  # one writer of the site at a time
        work = temporary_name(site)
        try:
            missing = []
            for pos, layer in enumerate(layers):
                nav = SiteNav(LayerSwitch(layers, pos), layer.dictionary, layer.name)
                if len(layers) > 1:
                    say(f"atlas: layer {layer.name} ({len(layer.found)} classes)", progress)
                missing += _write_site(layer.folder, layer.found, work / layer.prefix, cfg.atlas, progress, nav)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if missing:
            say(f"warning: atlas: {len(missing)} photo(s) not found or unreadable (shown in grey), e.g. "
                f"{missing[0]}", progress)
        return replace_folder(work, site) / "index.html"


def index_card(view) -> dict:
    """What the index shows of a class (kept instead of its whole view)."""
    d = view.diagnostics
    return {"page": view.page, "thumbnail": view.thumbnail, "class_name": view.class_name,
            "class_id": view.class_id, "class_index": view.class_index, "n_images": view.n_images,
            "n_concepts": view.n_concepts, "n_important": view.n_important, "concentration": view.concentration,
            "top_share": view.top_share, "method": view.methods[view.method].label,
            "axis": view.methods[view.method].axis, "explained": d.explained_share, "kind": view.kind}


def _write_site(run: Path, found: list[tuple[str, str]], work: Path, a, progress: bool,
                nav: SiteNav | None = None) -> list[str]:
    """Write the site of one layer (``run``: its run folder) into ``work``; returns the photos that could not be
    shown."""
    nav = nav if nav is not None else SiteNav()
    (work / "classes").mkdir(parents=True)
    shutil.copytree(STATIC, work / "static")
    index = RunIndex(run, found, a.n_similar)
    heads = HeadLoader(enabled=a.alignment and a.n_aligned > 0)
    pages = Pages(work, a, "concept atlas", nav)
    shared = DictionaryPages.of_run(run) if nav.dictionary else None
    cards, missing, warned = [], [], set()
    image_format, note = picture_format(a.image_format)
    if note:
        say(f"note: atlas: {note}", progress)
    labels, visuals = read_run_labels(run), VisualisationWriter(work, a.image_format, a.quality)
    for pos, (class_id, _) in enumerate(tqdm(found, desc="atlas", unit="class", disable=not progress)):
        data = load_class(run, class_id)
        head, reason = heads.load(data.act_attrs)
        if head is not None:
            index.n_logits = head.n_classes
        elif reason and reason not in warned:
            warned.add(reason)
            say(f"note: atlas: no concept-to-class alignment: {reason}", progress)
        store = PhotoStore(run, data, work, thumb_size=a.thumb_size, crop_size=a.crop_size,
                           image_format=image_format, quality=a.quality)
        view = build_class_view(data, ClassContext(index, pos, a, store, head, reason, labels=labels, fviz=visuals))
        if a.figures or a.sheets:
            from .figures import write_class_figures

            view.figures = write_class_figures(view, store, work, figures=a.figures, sheet=a.sheets)
        if shared is not None:
            atoms, mass = shared.atoms_of(class_id)
            for concept in view.concepts:  # each card names and links its atom
                concept.atom = int(atoms[concept.index])
                concept.atom_page = f"dictionary/a{concept.atom}.html"
            shared.add(view, atoms, mass)
        pages.class_pages(view)
        cards.append(index_card(view))
        missing += store.missing
    first = load_class(run, found[0][0], with_maps=False, with_coefficients=False).act_attrs
    pages.index(cards, run.resolve().name, str(first.get("model", "?")), str(first.get("layer", "?")))
    if shared is not None:
        pages.dictionary(shared.view(a.atoms_per_page, a.top_k))
    return missing
