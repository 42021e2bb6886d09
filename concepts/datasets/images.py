"""Decode images robustly: bad files are reported, never fatal; all colour modes become RGB."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ..models.preprocessing import Preprocessing


def to_rgb(image: Image.Image) -> Image.Image:
    """Grey, palette, CMYK, 16-bit and RGBA images to RGB (transparency composited on white)."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = image.point(lambda v: v * (1 / 256)).convert("L") if image.mode != "F" else image.convert("L")
    return image.convert("RGB")


class UnreadableImage(Exception):
    """Why a file is not a usable image, in words (recorded in the cache's ``images/error``)."""


def load_image(path: str | Path) -> tuple[Image.Image, bytes]:
    """Read and fully decode ``path``; returns (RGB image, raw bytes). Raises :class:`UnreadableImage` saying why."""
    import io

    from PIL import UnidentifiedImageError

    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise UnreadableImage("dangling symbolic link (its target does not exist)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise UnreadableImage("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # forces decoding: a truncated file raises here
            return to_rgb(image), data
    except UnidentifiedImageError:
        raise UnreadableImage("not an image (no image format recognised)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage(f"damaged or truncated image ({exc})") from None


class ImageFiles(Dataset):
    """The files of one class, preprocessed for the model; failures give ``ok=False`` and the error."""

    def __init__(self, files: list[Path], preprocessing: Preprocessing):
        self.files = list(files)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        size = self.preprocessing.input_size
        try:
            image, data = load_image(path)
            tensor = self.preprocessing.normalize(self.preprocessing.to_tensor(image))
            return {"index": index, "image": tensor, "ok": True, "width": image.width, "height": image.height,
                    "sha256": hashlib.sha256(data).hexdigest(), "error": ""}
        except Exception as exc:  # noqa: BLE001 - every decoding failure is recorded, none is fatal
            sha = ""
            try:
                sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                pass
            return {"index": index, "image": torch.zeros(3, size, size), "ok": False, "width": 0, "height": 0,
                    "sha256": sha, "error": (str(exc) if isinstance(exc, UnreadableImage)
                                             else f"{type(exc).__name__}: {exc}")[:300]}
