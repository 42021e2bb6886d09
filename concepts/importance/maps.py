"""Concept attribution maps: where each concept is present and where it contributes.

Maps are stored at feature resolution ``(n_images, r, H, W)`` and upsampled to the input
resolution on demand with :func:`upsample`:

* presence: the concept coefficient ``U_pk`` at every feature position ``p``;
* contribution: the concept's per-position term of the class logit (gradient x input on
  ``U_pk``; exactly ``U_pk (W_k · w_c) / N`` with a linear head), so that summing a
  contribution map over positions gives the concept's gradient x input importance.

For crops-mode runs :func:`crop_heatmaps` turns per-crop coefficients into an input-resolution
map by averaging each concept's coefficient over the crops covering each pixel.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConceptsError


def to_grid(position_values, grid: tuple[int, int]) -> np.ndarray:
    """(n_images, N, r) per-position values -> (n_images, r, H, W) with ``N == H * W`` (row-major)."""
    values = np.asarray(position_values)
    if values.ndim != 3:
        raise ConceptsError(f"expected (n_images, positions, r); got shape {values.shape}")
    h, w = int(grid[0]), int(grid[1])
    if values.shape[1] != h * w:
        raise ConceptsError(f"{values.shape[1]} positions do not fill a {h}x{w} grid")
    return values.reshape(values.shape[0], h, w, values.shape[2]).transpose(0, 3, 1, 2)


def presence_maps(coefficients, grid: tuple[int, int]) -> np.ndarray:
    """Concept coefficients per feature position: (n_images, N, r) -> (n_images, r, H, W)."""
    return to_grid(coefficients, grid)


def contribution_maps(position_contributions, grid: tuple[int, int]) -> np.ndarray:
    """Per-position contributions to the class logit (e.g. ``GradientInput`` result ``positions``) on the grid."""
    return to_grid(position_contributions, grid)


def upsample(maps, size: int | tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Upsample ``(..., H, W)`` maps to ``size`` (input resolution), bilinear by default.

    Each feature position is treated as the centre of its receptive cell (``align_corners=False``).
    """
    arr = np.asarray(maps, dtype=np.float32)
    if arr.ndim < 2:
        raise ConceptsError(f"maps need at least 2 dimensions (H, W); got shape {arr.shape}")
    size = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    lead = arr.shape[:-2]
    flat = torch.from_numpy(np.ascontiguousarray(arr.reshape(-1, 1, *arr.shape[-2:])))
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(flat, size=size, mode=mode, **kwargs)
    return out.reshape(*lead, *size).numpy()


def crop_heatmaps(coefficients, boxes, size: int | tuple[int, int]) -> np.ndarray:
    """Input-resolution presence maps of one image from its crops.

    ``coefficients`` (R, r) concept coefficients of the image's crops, ``boxes`` (R, 4) their
    ``x0, y0, x1, y1`` in model-input pixels; returns (r, height, width): at each pixel the mean
    coefficient over the crops that cover it (0 where no crop does).
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.int64)
    if coefficients.ndim != 2 or boxes.shape != (coefficients.shape[0], 4):
        raise ConceptsError(f"expected (R, r) coefficients and (R, 4) boxes; got {coefficients.shape}, {boxes.shape}")
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    r = coefficients.shape[1]
    # Summed-area accumulation: +/- at the box corners, then cumulative sums.
    acc = np.zeros((r, height + 1, width + 1))
    cover = np.zeros((height + 1, width + 1))
    for (x0, y0, x1, y1), u in zip(boxes, coefficients):
        x0, x1 = np.clip([x0, x1], 0, width)
        y0, y1 = np.clip([y0, y1], 0, height)
        if x1 <= x0 or y1 <= y0:
            continue
        for sign, (yy, xx) in ((1, (y0, x0)), (-1, (y0, x1)), (-1, (y1, x0)), (1, (y1, x1))):
            acc[:, yy, xx] += sign * u
            cover[yy, xx] += sign
    acc = acc.cumsum(axis=-1).cumsum(axis=-2)[:, :height, :width]
    cover = cover.cumsum(axis=-1).cumsum(axis=-2)[:height, :width]
    return np.divide(acc, cover[None], out=np.zeros_like(acc), where=cover[None] > 0.5).astype(np.float32)
