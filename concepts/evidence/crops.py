"""The top crops of every concept: the cached rows with the largest coefficients, one per image, with their boxes
in model-input pixels (as cached) and in the pixels of the original photo (to cut them at full resolution, or
to rebuild a figure from the exports and the photos alone)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the smallest crop side shown, in model-input pixels (a feature-map cell of 32 px is unreadable alone)
MIN_CROP = 64


@dataclass(frozen=True)
class TopCrop:
    """One crop of a concept: ``rank`` 1 has the largest coefficient."""

    concept: int
    rank: int
    row: int  # row of the activations / coefficients
    image: int  # index into the class's image list
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in model-input pixels (grown to the minimum size shown)
    original_box: tuple[int, int, int, int] | None  # the same box in the original photo's pixels (None: size unknown)
    coefficient: float


def top_rows(coefficients: np.ndarray, concept: int, k: int, row_image: np.ndarray | None = None,
             distinct_images: bool = True) -> np.ndarray:
    """Indices of the ``k`` cached rows with the largest coefficient for ``concept`` (descending).

    With ``distinct_images`` at most one row per image is taken, so the crops show ``k``
    different photos when there are that many.
    """
    column = np.asarray(coefficients[:, concept], dtype=np.float64)
    order = np.argsort(-column, kind="stable")
    if not distinct_images or row_image is None:
        return order[:k]
    chosen: list[int] = []
    seen: set[int] = set()
    for row in order:
        image = int(row_image[row])
        if image in seen:
            continue
        seen.add(image)
        chosen.append(int(row))
        if len(chosen) == k:
            break
    return np.asarray(chosen, dtype=np.int64)


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


def model_input_geometry(width: int, height: int, preprocessing: dict | None) -> tuple[float, float, int, int, int]:
    """Where the model-input square lies in a ``width`` x ``height`` photo (timm's eval transform: resize the
    shorter side to ``floor(input_size / crop_pct)``, take the centre square): ``(scale_x, scale_y, left, top,
    input_size)``, so that input pixel x is original pixel ``(x + left) * scale_x``."""
    prep = preprocessing or {}
    size = prep.get("input_size", 224)
    size = int(size[-1] if isinstance(size, (list, tuple)) else size)
    crop_pct = float(prep.get("crop_pct", 0.875) or 1.0)
    short = int(math.floor(size / crop_pct))
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return width / new_w, height / new_h, left, top, size


def input_box_to_original(box, width: int, height: int, preprocessing: dict | None) -> tuple[int, int, int, int]:
    """A box in model-input pixels as a box of the original photo (rounded outwards, kept inside it)."""
    sx, sy, left, top, _ = model_input_geometry(int(width), int(height), preprocessing)
    x0, y0, x1, y1 = (float(v) for v in box)
    return (max(0, int(math.floor((x0 + left) * sx + 1e-6))), max(0, int(math.floor((y0 + top) * sy + 1e-6))),
            min(int(width), int(math.ceil((x1 + left) * sx - 1e-6))),
            min(int(height), int(math.ceil((y1 + top) * sy - 1e-6))))


def top_crops(data, k: int, min_size: int = MIN_CROP) -> dict[int, list[TopCrop]]:
    """concept -> its ``k`` top crops (distinct images, positive coefficients, never a skipped image)."""
    out: dict[int, list[TopCrop]] = {c: [] for c in range(data.n_concepts)}
    if k <= 0 or not len(data.coefficients):
        return out
    valid = ~data.skipped[data.row_image]
    coefficients = np.where(valid[:, None], data.coefficients, -np.inf)
    prep = data.act_attrs.get("preprocessing")
    for concept in out:
        for row in top_rows(coefficients, concept, k, data.row_image):
            value = float(coefficients[row, concept])
            if not np.isfinite(value) or value <= 0:
                continue  # a concept absent from every remaining row
            image = int(data.row_image[row])
            box = display_box(data.row_box[row], data.input_size, min_size)
            w = int(data.image_width[image]) if data.image_width is not None else 0
            h = int(data.image_height[image]) if data.image_height is not None else 0
            original = input_box_to_original(box, w, h, prep) if w > 0 and h > 0 else None
            out[concept].append(TopCrop(concept, len(out[concept]) + 1, int(row), image, box, original,
                                        float(data.coefficients[row, concept])))
    return out
