"""Pictures of the atlas: the model-input view of a photo, concept heatmaps and colour overlays.

Everything here works on numpy arrays and PIL images; nothing depends on torch.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

#: Distinct colours for concepts (Okabe-Ito + tab10 extras), as RGB 0-255.
PALETTE = [
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
    (213, 94, 0), (204, 121, 167), (148, 103, 189), (140, 86, 75), (127, 127, 127),
    (188, 189, 34), (23, 190, 207),
]

#: The filters of ``Preprocessing._mode``; any other name is bicubic there, so here too.
_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def concept_colour(rank: int) -> tuple[int, int, int]:
    """The colour of the concept at ``rank`` (0 = most important) on every page and sheet."""
    return PALETTE[rank % len(PALETTE)]


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % tuple(int(c) for c in rgb)


def model_input_view(image: Image.Image, preprocessing: dict[str, Any] | None) -> Image.Image:
    """The photo as the model sees it before normalisation (timm-style eval transform).

    Resize the shorter side to ``floor(input_size / crop_pct)`` and take the centre
    ``input_size`` square, as :class:`concepts.models.preprocessing.Preprocessing.view`.
    """
    prep = preprocessing or {}
    size = prep.get("input_size", 224)
    if isinstance(size, (list, tuple)):
        size = size[-1]
    size = int(size)
    crop_pct = float(prep.get("crop_pct", 0.875) or 1.0)
    resample = _RESAMPLE.get(str(prep.get("interpolation", "bicubic")), Image.BICUBIC)
    image = image.convert("RGB")
    short = int(math.floor(size / crop_pct))
    w, h = image.size
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), resample)
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def upsample(maps: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of (..., H, W) maps to (..., size, size) (half-pixel centres).

    Same convention as ``torch.nn.functional.interpolate(mode='bilinear', align_corners=False)``.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    maps = np.asarray(maps, dtype=np.float32)
    in_h, in_w = maps.shape[-2:]

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo).astype(np.float32)

    y0, y1, wy = axis(in_h, out_h)
    x0, x1, wx = axis(in_w, out_w)
    rows = maps[..., y0, :] * (1 - wy)[:, None] + maps[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def heat_overlay(heat: np.ndarray, colour: tuple[int, int, int], size: int, *, max_alpha: float = 0.8,
                 gamma: float = 1.0) -> Image.Image:
    """A transparent RGBA overlay: ``colour`` with opacity proportional to ``heat`` in [0, 1]."""
    value = np.clip(upsample(heat, size), 0.0, 1.0) ** gamma
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    rgba[..., :3] = np.asarray(colour, dtype=np.uint8)
    rgba[..., 3] = np.round(value * max_alpha * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def composite_overlay(heats: np.ndarray, colours: list[tuple[int, int, int]], size: int, *,
                      threshold: float = 0.15, max_alpha: float = 0.75) -> Image.Image:
    """One RGBA overlay for several concepts: each pixel takes the colour of its strongest concept.

    ``heats`` is (m, H, W) with values in [0, 1] (each concept normalised on its own);
    pixels where no concept exceeds ``threshold`` stay transparent.
    """
    up = np.clip(upsample(heats, size), 0.0, 1.0)
    winner = up.argmax(axis=0)
    strength = up.max(axis=0)
    table = np.asarray(colours, dtype=np.uint8)
    rgba = np.zeros((*strength.shape, 4), dtype=np.uint8)
    rgba[..., :3] = table[winner]
    alpha = np.where(strength >= threshold, strength, 0.0) * max_alpha
    rgba[..., 3] = np.round(alpha * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def placeholder(size: int) -> Image.Image:
    """A neutral grey square shown when a photo cannot be found."""
    return Image.new("RGB", (size, size), (200, 200, 200))


def png_data_uri(picture: Image.Image) -> str:
    """A small picture as a ``data:image/png;base64,...`` URI (inline in the page: no file, no request)."""
    import base64
    import io

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def presence_map(heat: np.ndarray, colour: tuple[int, int, int], *, max_alpha: float = 0.8) -> Image.Image:
    """A concept's presence at feature-map resolution (values in [0, 1]) as an RGBA picture in its colour; the
    browser's smooth upscaling turns it into the heatmap."""
    rgba = np.zeros((*heat.shape, 4), dtype=np.uint8)
    rgba[..., :3] = np.asarray(colour, dtype=np.uint8)
    rgba[..., 3] = np.round(np.clip(heat, 0.0, 1.0) * max_alpha * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


#: colours of a signed contribution map: raises the logit / lowers it
POSITIVE, NEGATIVE = (214, 39, 40), (31, 119, 180)


def signed_map(values: np.ndarray, scale: float, *, max_alpha: float = 0.85) -> Image.Image:
    """A signed map (a concept's contribution to the logit per position) at feature-map resolution: red where it
    raises the logit, blue where it lowers it, opacity ``|value| / scale``."""
    value = np.asarray(values, np.float32) / (scale if scale > 0 else 1.0)
    rgba = np.zeros((*value.shape, 4), dtype=np.uint8)
    rgba[..., :3] = np.where(value[..., None] >= 0, np.asarray(POSITIVE, np.uint8), np.asarray(NEGATIVE, np.uint8))
    rgba[..., 3] = np.round(np.clip(np.abs(value), 0.0, 1.0) * max_alpha * 255).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def _b64(values: np.ndarray) -> str:
    import base64

    return base64.b64encode(np.ascontiguousarray(values, dtype=np.uint8).tobytes()).decode("ascii")


def alpha_bytes(heat: np.ndarray, *, max_alpha: float = 0.85, floor: float = 0.1) -> str:
    """A map in [0, 1] (H, W) as base64 opacity bytes, drawn by the pages' script on a canvas in one colour;
    values under ``floor`` are transparent, so that a faint presence does not tint the whole picture."""
    value = np.clip((np.asarray(heat, np.float32) - floor) / (1.0 - floor), 0.0, 1.0)
    return _b64(np.round(value * max_alpha * 255))


def signed_bytes(values: np.ndarray, scale: float) -> str:
    """A signed map (H, W) as base64 bytes, 128 + 127 * value / scale (the script draws red above 128, blue
    below, opacity by the distance)."""
    value = np.clip(np.asarray(values, np.float32) / (scale if scale > 0 else 1.0), -1.0, 1.0)
    return _b64(np.round(128 + 127 * value))


def rgba_bytes(picture: Image.Image) -> str:
    """An RGBA picture (small: feature-map resolution) as base64 bytes, row after row."""
    return _b64(np.asarray(picture.convert("RGBA")))
