"""What one class looks like in the atlas: a render-ready description shared by the HTML pages
and the PNG sheets, plus the store that loads each photo once and writes each picture once."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .analysis import Neighbour, concentration, embed_2d, n_important, top_rows
from ..schema.classdata import ClassData, resolve_image_path
from .images import (composite_overlay, concept_colour, heat_overlay, hex_colour, model_input_view,
                     placeholder)


class PhotoStore:
    """Loads the model-input view of each photo of a class once, and writes each file once.

    Files go to ``<site>/img/<stem>/``; URLs returned are relative to the site root.
    ``site=None`` keeps everything in memory (for the PNG sheets alone).
    """

    def __init__(self, run: Path, data: ClassData, site: Path | None, *, thumb_size: int = 192,
                 image_format: str = "jpeg", quality: int = 80, heat_size: int = 64,
                 overlay_size: int = 112):
        self.run = Path(run)
        self.data = data
        self.site = site
        self.thumb_size = int(thumb_size)
        self.image_format = image_format.lower()
        if self.image_format not in ("jpeg", "webp"):
            raise ValueError("image_format must be 'jpeg' or 'webp'")
        self.quality = int(quality)
        self.heat_size = int(heat_size)
        self.overlay_size = int(overlay_size)
        self._views: dict[int, np.ndarray] = {}
        self._written: dict[str, str] = {}
        self.missing: list[str] = []
        size = data.input_size
        self.input_size = size
        if data.presence is not None:
            # normalise each concept by its largest presence over the class's kept images
            kept = data.presence[data.kept] if data.n_images else data.presence
            peak = kept.max(axis=(0, 2, 3)) if kept.size else np.ones(data.n_concepts)
            self._peak = np.where(peak > 0, peak, 1.0).astype(np.float32)
        else:
            self._peak = None

    # ---- pixels -------------------------------------------------------------------------
    def view(self, image: int) -> np.ndarray:
        """(S, S, 3) uint8 model-input view of image ``image`` (grey if the photo is missing)."""
        if image not in self._views:
            raw = self.data.image_paths[image]
            path = resolve_image_path(self.run, raw)
            picture = None
            if path is not None:
                try:
                    with Image.open(path) as handle:
                        picture = model_input_view(handle, self.data.act_attrs.get("preprocessing"))
                except (OSError, ValueError) as exc:
                    raw = f"{raw} (unreadable: {exc})"
            if picture is None:
                self.missing.append(raw)
                picture = placeholder(self.input_size)
            self._views[image] = np.asarray(picture.convert("RGB"), dtype=np.uint8)
        return self._views[image]

    def heat(self, image: int, concept: int) -> np.ndarray | None:
        """Presence of ``concept`` on ``image`` at feature resolution, scaled to [0, 1] per concept."""
        if self.data.presence is None:
            return None
        return np.clip(self.data.presence[image, concept] / self._peak[concept], 0.0, 1.0)

    # ---- files --------------------------------------------------------------------------
    def _save(self, name: str, picture: Image.Image, **kwargs: Any) -> str:
        if name in self._written:
            return self._written[name]
        url = f"img/{self.data.stem}/{name}"
        if self.site is not None:
            path = self.site / url
            path.parent.mkdir(parents=True, exist_ok=True)
            picture.save(path, **kwargs)
        self._written[name] = url
        return url

    def photo_url(self, image: int) -> str:
        ext = "jpg" if self.image_format == "jpeg" else "webp"
        name = f"{image}.{ext}"
        if name in self._written:
            return self._written[name]
        picture = Image.fromarray(self.view(image))
        if picture.size[0] != self.thumb_size:
            picture = picture.resize((self.thumb_size, self.thumb_size), Image.LANCZOS)
        fmt = "JPEG" if self.image_format == "jpeg" else "WEBP"
        return self._save(name, picture, format=fmt, quality=self.quality, optimize=True) if fmt == "JPEG" \
            else self._save(name, picture, format=fmt, quality=self.quality, method=4)

    def heat_url(self, image: int, concept: int, colour: tuple[int, int, int]) -> str | None:
        heat = self.heat(image, concept)
        if heat is None:
            return None
        name = f"h{image}_c{concept}.png"
        if name in self._written:
            return self._written[name]
        return self._save(name, heat_overlay(heat, colour, self.heat_size), format="PNG")

    def overlay_url(self, image: int, concepts: list[int], colours: list[tuple[int, int, int]]) -> str | None:
        if self.data.presence is None or not concepts:
            return None
        name = f"m{image}.png"
        if name in self._written:
            return self._written[name]
        heats = np.stack([self.heat(image, c) for c in concepts])
        return self._save(name, composite_overlay(heats, colours, self.overlay_size), format="PNG")


@dataclass
class Crop:
    image: int
    box: tuple[int, int, int, int]
    coefficient: float
    image_name: str
    photo: str | None = None
    heat: str | None = None


@dataclass
class ConceptView:
    index: int  # position in the concept bank
    rank: int  # 1 = most important
    share: float  # primary method's share of the class logit
    shares: dict[str, float]  # every method's share
    ci: dict[str, tuple[float, float]]
    colour: str
    crops: list[Crop] = field(default_factory=list)
    similar: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ExampleView:
    image: int
    image_name: str
    logit: float
    photo: str | None
    overlay: str | None
    legend: list[dict[str, Any]]


@dataclass
class ClassView:
    class_id: str
    class_name: str
    class_index: int
    stem: str
    n_images: int
    n_images_listed: int
    n_concepts: int
    n_important: int
    concentration: float
    top_share: float
    method: str
    methods: list[str]
    factorization: str
    model: str
    layer: str
    mode: str
    concepts: list[ConceptView]
    examples: list[ExampleView]
    points: list[dict[str, Any]]
    thumbnail: str | None
    input_size: int


def display_box(box, size: int, min_size: int) -> tuple[int, int, int, int]:
    """The box to show for a row: its own box, grown around its centre to at least ``min_size``
    pixels (feature-map cells of 32 px are unreadable alone) and kept inside the picture."""
    x0, y0, x1, y1 = (int(v) for v in box)
    side = min(max(x1 - x0, y1 - y0, min_size), size)
    out = []
    for lo, hi in ((x0, x1), (y0, y1)):
        if hi - lo >= side:
            out.append((lo, hi))
            continue
        start = int(round((lo + hi) / 2 - side / 2))
        start = min(max(start, 0), size - side)
        out.append((start, start + side))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


def _image_name(raw: str) -> str:
    return os.path.basename(raw) or raw


def build_view(data: ClassData, store: PhotoStore, *, top_k: int = 6, n_examples: int = 4,
               n_overlay: int = 5, neighbours: list[list[Neighbour]] | None = None,
               others: list[tuple[str, str, str]] | None = None, write: bool = True,
               max_points: int = 600, min_crop: int = 64) -> ClassView:
    """Decide what the class shows and (with ``write``) write its pictures through ``store``.

    ``neighbours[k]`` are the similar concepts of concept ``k``; ``others[pos]`` is the
    (class_id, class_name, stem) of the class at ``Neighbour.class_pos``.
    """
    order = data.order
    share = data.primary_share
    method = data.primary_method or "coefficient mass"
    # rows of skipped images cannot be shown
    valid_rows = ~data.skipped[data.row_image] if len(data.row_image) else np.zeros(0, bool)
    coefficients = np.where(valid_rows[:, None], data.coefficients, -np.inf) if len(valid_rows) else data.coefficients

    concepts: list[ConceptView] = []
    for rank, k in enumerate(order):
        k = int(k)
        colour = concept_colour(rank)
        view = ConceptView(
            index=k, rank=rank + 1, share=float(share[k]),
            shares={m: float(v.share[k]) for m, v in sorted(data.methods.items())},
            ci={m: (float(v.share_ci_low[k]), float(v.share_ci_high[k])) for m, v in sorted(data.methods.items())
                if v.share_ci_low is not None and v.share_ci_high is not None},
            colour=hex_colour(colour),
        )
        if top_k > 0 and len(coefficients):
            for row in top_rows(coefficients, k, top_k, data.row_image):
                row = int(row)
                if not np.isfinite(coefficients[row, k]) or coefficients[row, k] <= 0:
                    continue  # a skipped image, or a concept absent from every remaining row
                image = int(data.row_image[row])
                crop = Crop(image=image, box=display_box(data.row_box[row], data.input_size, min_crop),
                            coefficient=float(data.coefficients[row, k]),
                            image_name=_image_name(data.image_paths[image]))
                if write:
                    crop.photo = store.photo_url(image)
                    crop.heat = store.heat_url(image, k, colour)
                view.crops.append(crop)
        if neighbours is not None and others is not None:
            for nb in neighbours[k]:
                oid, oname, ostem = others[nb.class_pos]
                view.similar.append({"class_id": oid, "class_name": oname, "stem": ostem,
                                     "concept": nb.concept, "cosine": nb.cosine})
        concepts.append(view)

    # per-image view: the images the model is most sure of
    kept_idx = data.kept
    logits = np.nan_to_num(data.logit[kept_idx].astype(np.float64), nan=-np.inf)
    chosen = kept_idx[np.argsort(-logits, kind="stable")][:n_examples]
    overlay_concepts = [int(k) for k in order[:n_overlay]]
    overlay_colours = [concept_colour(r) for r in range(len(overlay_concepts))]
    primary = data.methods.get(data.primary_method) if data.primary_method else None
    examples: list[ExampleView] = []
    for image in chosen:
        image = int(image)
        legend = []
        for r, k in enumerate(overlay_concepts):
            value = None
            if primary is not None and primary.per_image is not None:
                value = float(primary.per_image[image, k])
            legend.append({"concept": k, "rank": r + 1, "colour": hex_colour(overlay_colours[r]),
                           "importance": value})
        examples.append(ExampleView(
            image=image, image_name=_image_name(data.image_paths[image]), logit=float(data.logit[image]),
            photo=store.photo_url(image) if write else None,
            overlay=store.overlay_url(image, overlay_concepts, overlay_colours) if write else None,
            legend=legend))

    # embedding of the images by their concept importances
    if primary is not None and primary.per_image is not None:
        features = primary.per_image[kept_idx]
    else:  # mean coefficient of each image's rows
        sums = np.zeros((len(data.skipped), data.n_concepts), np.float64)
        counts = np.zeros(len(data.skipped))
        if len(data.coefficients):
            np.add.at(sums, data.row_image, data.coefficients)
            np.add.at(counts, data.row_image, 1)
        features = sums[kept_idx] / np.maximum(counts[kept_idx], 1)[:, None]
    if len(kept_idx) > max_points:
        pick = np.linspace(0, len(kept_idx) - 1, max_points).round().astype(int)
        kept_sel, features = kept_idx[pick], features[pick]
    else:
        kept_sel = kept_idx
    features = np.nan_to_num(np.asarray(features, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    coords = embed_2d(features)
    rank_of = {int(k): r for r, k in enumerate(order)}
    points = []
    for (x, y), image, feats in zip(coords, kept_sel, features):
        dominant = int(np.argmax(feats)) if len(feats) else 0
        r = rank_of.get(dominant, 0)
        points.append({"x": float(x), "y": float(y), "image": int(image),
                       "image_name": _image_name(data.image_paths[int(image)]),
                       "concept": dominant, "rank": r + 1,
                       "colour": hex_colour(concept_colour(r)) if r < 12 else "#999999"})

    thumb_image = int(chosen[0]) if len(chosen) else None
    thumbnail = store.photo_url(thumb_image) if (write and thumb_image is not None) else None
    return ClassView(
        class_id=data.class_id, class_name=data.class_name, class_index=data.class_index, stem=data.stem,
        n_images=data.n_images, n_images_listed=len(data.image_paths), n_concepts=data.n_concepts,
        n_important=n_important(share), concentration=concentration(share),
        top_share=float(share[order[0]]) if len(order) else 0.0, method=method,
        methods=sorted(data.methods), factorization=str(data.concept_attrs.get("method", "?")),
        model=str(data.act_attrs.get("model", "?")), layer=str(data.act_attrs.get("layer", "?")),
        mode=str(data.act_attrs.get("mode", "?")), concepts=concepts, examples=examples, points=points,
        thumbnail=thumbnail, input_size=data.input_size,
    )
