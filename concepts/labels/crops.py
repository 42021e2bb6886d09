"""The crops that show a concept: its rows with the largest coefficients, one per image, as pictures."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..models.preprocessing import Preprocessing
from ..schema.classdata import ClassData, resolve_image_path
from .encoders import CropRef


def top_rows(coefficients: np.ndarray, row_image: np.ndarray, usable: np.ndarray, concept: int, n: int) -> list[int]:
    """The ``n`` rows with the largest positive coefficient of ``concept``, at most one per image, among the rows
    of ``usable`` images."""
    values = coefficients[:, concept]
    chosen, seen = [], set()
    for row in np.argsort(-values, kind="stable"):
        image = int(row_image[row])
        if values[row] <= 0 or len(chosen) >= n:
            break
        if image in seen or not usable[image]:
            continue
        seen.add(image)
        chosen.append(int(row))
    return chosen


def grow_box(box, size: int, min_size: int) -> tuple[int, int, int, int]:
    """``box`` grown around its centre to at least ``min_size`` pixels a side, kept inside the ``size`` square."""
    x0, y0, x1, y1 = (int(v) for v in box)
    side = min(max(x1 - x0, y1 - y0, int(min_size)), int(size))
    out = []
    for lo, hi in ((x0, x1), (y0, y1)):
        if hi - lo >= side:
            out.append((lo, hi))
            continue
        start = min(max(int(round((lo + hi) / 2 - side / 2)), 0), size - side)
        out.append((start, start + side))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


def preprocessing_of(attrs: dict) -> Preprocessing:
    prep = attrs.get("preprocessing") or {}
    size = prep.get("input_size", 224)
    size = int(size[-1] if isinstance(size, (list, tuple)) else size)
    return Preprocessing(input_size=size, interpolation=str(prep.get("interpolation", "bicubic")),
                         crop_pct=float(prep.get("crop_pct", 0.875)), mean=tuple(prep.get("mean", (0.5,) * 3)),
                         std=tuple(prep.get("std", (0.5,) * 3)))


class PictureSource:
    """The model-input view of each photo of a class, loaded once (None for a photo that is gone)."""

    def __init__(self, run, data: ClassData):
        self.run, self.data = run, data
        self.prep = preprocessing_of(data.act_attrs)
        self._views: dict[int, Image.Image | None] = {}

    def view(self, image: int) -> Image.Image | None:
        if image not in self._views:
            path = resolve_image_path(self.run, self.data.image_paths[image])
            picture = None
            if path is not None:
                try:
                    with Image.open(path) as handle:
                        picture = self.prep.view(handle.convert("RGB"))
                except (OSError, ValueError):
                    picture = None
            self._views[image] = picture
        return self._views[image]


def concept_crops(run, data: ClassData, n_crops: int, min_crop: int) -> list[list[CropRef]]:
    """For every concept of the class, the crops of its top rows (photos that cannot be read are left out)."""
    source = PictureSource(run, data)
    size = source.prep.input_size
    usable = ~np.asarray(data.skipped, bool)
    out = []
    for k in range(data.n_concepts):
        crops = []
        for row in top_rows(data.coefficients, data.row_image, usable, k, n_crops):
            image = int(data.row_image[row])
            picture = source.view(image)
            if picture is None:
                continue
            box = grow_box(data.row_box[row], size, min_crop)
            crops.append(CropRef(picture.crop(box), data.image_paths[image], box, size))
        out.append(crops)
    return out
