"""The pictures of one class: each photo and each crop written once (shared by the class, concept and image
pages), cut from the original photo at its own resolution, and the concept maps as tiny inline pictures.

* a photo file is the model-input square of the original (what the model saw), at most ``thumb_size`` pixels
  and never more than the original has;
* a crop file is the crop's box in the original photo, at most twice its displayed size (sharp on 2x screens),
  never upscaled;
* maps (presence, contribution, composite) stay at feature-map resolution (7 x 7 for a CNN), inline in the page as
  ~70 base64 characters drawn on a canvas by the pages' script; the browser's smooth upscaling draws the heatmap,
  and no file is written for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..evidence.crops import input_box_to_original
from ..schema.classdata import ClassData, resolve_image_path
from .images import alpha_bytes, composite_overlay, model_input_view, placeholder, rgba_bytes, signed_bytes

_FORMATS = {"webp": ("WEBP", "webp"), "jpeg": ("JPEG", "jpg"), "avif": ("AVIF", "avif")}

#: libavif's encoder speed (0-10): 9 encodes a 192-px photo in ~10 ms here, 8 in 2.5-5x that for ~5% fewer bytes
#: (benchmarks/picture_formats.py)
AVIF_SPEED = 9


def picture_format(image_format: str) -> tuple[str, str]:
    """``(format, note)``: the format the photos and crops are written in, ``image_format`` where the installed
    Pillow writes it (AVIF needs a Pillow built with libavif, as the PyPI wheel of Pillow 13), else WebP
    with a one-line note saying so ('' when none is needed)."""
    if image_format == "avif":
        from PIL import features

        if not features.check("avif"):
            return "webp", "the installed Pillow cannot write AVIF (no libavif): the pictures are WebP"
    return image_format, ""


@dataclass(frozen=True)
class CanvasMap:
    """A map at feature-map resolution, drawn on a canvas by ``static/atlas.js`` and upscaled smoothly by the
    browser: ``alpha`` (opacity bytes in ``colour``), ``signed`` (128 = 0; red above, blue below) or ``rgba``."""

    kind: str
    data: str  # base64 bytes, row after row
    width: int
    height: int
    colour: str = ""


class PhotoStore:
    """Opens each photo of a class once and writes each picture once, under ``<site>/img/<stem>/``.

    URLs returned are relative to the site root. ``site=None`` writes nothing (figures and sheets only).
    """

    def __init__(self, run: Path, data: ClassData, site: Path | None, *, thumb_size: int = 192,
                 crop_size: int = 112, image_format: str = "webp", quality: int = 70):
        if image_format not in _FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(_FORMATS)}")
        self.run, self.data, self.site = Path(run), data, site
        self.thumb_size, self.crop_size, self.quality = int(thumb_size), int(crop_size), int(quality)
        self.format, self.ext = _FORMATS[image_format]
        self.input_size = data.input_size
        self.missing: list[str] = []
        self._originals: dict[int, Image.Image | None] = {}
        self._views: dict[int, np.ndarray] = {}
        self._written: dict[str, str] = {}
        self._peak = self._presence_peaks()

    def _presence_peaks(self) -> np.ndarray | None:
        """Each concept's largest presence over the class's kept images (maps are scaled by it)."""
        if self.data.presence is None:
            return None
        kept = self.data.presence[self.data.kept]
        peak = kept.max(axis=(0, 2, 3)) if kept.size else np.ones(self.data.n_concepts)
        return np.where(peak > 0, peak, 1.0).astype(np.float32)

    # ---- pixels -------------------------------------------------------------------------------------------
    def original(self, image: int) -> Image.Image | None:
        """The photo as decoded for the model (EXIF orientation applied, RGB), None when it cannot be read."""
        if image not in self._originals:
            from ..datasets.images import to_rgb  # the decoding of the extraction (imports torch: only when needed)

            raw = self.data.image_paths[image]
            path = resolve_image_path(self.run, raw)
            picture = None
            if path is not None:
                try:
                    with Image.open(path) as handle:
                        handle.load()
                        picture = to_rgb(handle)
                except (OSError, ValueError, SyntaxError) as exc:
                    raw = f"{raw} (unreadable: {exc})"
            if picture is None:
                self.missing.append(raw)
            self._originals[image] = picture
        return self._originals[image]

    def view(self, image: int) -> np.ndarray:
        """(S, S, 3) uint8 model-input view of ``image`` (grey when the photo is missing)."""
        if image not in self._views:
            picture = self.original(image)
            picture = placeholder(self.input_size) if picture is None else \
                model_input_view(picture, self.data.act_attrs.get("preprocessing"))
            self._views[image] = np.asarray(picture.convert("RGB"), dtype=np.uint8)
        return self._views[image]

    def presence(self, image: int, concept: int, own_scale: bool = True) -> np.ndarray | None:
        """Presence of ``concept`` on ``image`` at feature resolution in [0, 1]. ``own_scale``: scaled to the map's
        own maximum, or to a quarter of the concept's maximum over the class when the map is fainter (where a
        concept is shows on every image, and a trace of it does not look like a strong presence); otherwise
        scaled to the concept's maximum over the class (maps of several concepts compared, as in a composite)."""
        if self._peak is None:
            return None
        heat = self.data.presence[image, concept]
        peak = float(self._peak[concept])
        scale = max(float(heat.max(initial=0.0)), 0.25 * peak) if own_scale else peak
        return np.clip(heat / scale, 0.0, 1.0)

    def crop_pixels(self, image: int, box) -> Image.Image:
        """The crop ``box`` (model-input pixels) of the original photo at its own resolution."""
        picture = self.original(image)
        if picture is None:
            side = max(int(box[2]) - int(box[0]), 1)
            return placeholder(side)
        return picture.crop(input_box_to_original(box, picture.width, picture.height,
                                                  self.data.act_attrs.get("preprocessing")))

    # ---- files --------------------------------------------------------------------------------------------
    def _save(self, name: str, picture: Image.Image) -> str:
        if name not in self._written:
            url = f"img/{self.data.stem}/{name}.{self.ext}"
            if self.site is not None:
                path = self.site / url
                path.parent.mkdir(parents=True, exist_ok=True)
                options: dict[str, Any] = {"quality": self.quality}
                if self.format == "WEBP":
                    options["method"] = 3
                elif self.format == "AVIF":
                    options["speed"] = AVIF_SPEED
                else:
                    options["optimize"] = True
                picture.convert("RGB").save(path, format=self.format, **options)
            self._written[name] = url
        return self._written[name]

    def photo_url(self, image: int) -> str:
        """The photo's file: the model-input square of the original, at most ``thumb_size`` pixels."""
        name = f"p{image}"
        if name in self._written:
            return self._written[name]
        square = self.crop_pixels(image, (0, 0, self.input_size, self.input_size))
        side = min(self.thumb_size, max(square.size))
        if square.size != (side, side):
            square = square.resize((side, side), Image.LANCZOS)
        return self._save(name, square)

    def crop_url(self, image: int, box, row: int) -> str:
        """A crop's file (``row``: the cached row it shows, one file per row): its box in the original, at most
        twice the displayed size, never upscaled."""
        name = f"r{row}"
        if name in self._written:
            return self._written[name]
        crop = self.crop_pixels(image, box)
        longest = max(crop.size)
        limit = 2 * self.crop_size
        if longest > limit:
            crop = crop.resize((max(1, round(crop.width * limit / longest)),
                                max(1, round(crop.height * limit / longest))), Image.LANCZOS)
        return self._save(name, crop)

    # ---- maps (inline, drawn by the pages' script) -----------------------------------------------------------
    def presence_map(self, image: int, concept: int, colour: str) -> CanvasMap | None:
        heat = self.presence(image, concept)
        if heat is None:
            return None
        return CanvasMap("alpha", alpha_bytes(heat), heat.shape[1], heat.shape[0], colour)

    def contribution_map(self, image: int, concept: int, scale: float) -> CanvasMap | None:
        """The concept's per-position term of the logit on ``image`` (red raises it, blue lowers it), opacity
        relative to ``scale`` (the largest |term| of the image, so the maps of one image compare)."""
        if self.data.contribution is None:
            return None
        values = self.data.contribution[image, concept]
        return CanvasMap("signed", signed_bytes(values, scale), values.shape[1], values.shape[0])

    def contribution_scale(self, image: int) -> float:
        if self.data.contribution is None:
            return 1.0
        peak = float(np.abs(self.data.contribution[image]).max(initial=0.0))
        return peak if peak > 0 else 1.0

    def composite_map(self, image: int, concepts: list[int], colours: list[tuple[int, int, int]]) -> CanvasMap | None:
        """Where the ``concepts`` are on ``image``: each position takes the colour of its strongest concept."""
        if self._peak is None or not concepts:
            return None
        heats = np.stack([self.presence(image, c, own_scale=False) for c in concepts])
        picture = composite_overlay(heats, colours, tuple(heats.shape[-2:]))
        return CanvasMap("rgba", rgba_bytes(picture), picture.width, picture.height)
