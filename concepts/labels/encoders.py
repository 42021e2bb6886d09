"""The encoders that embed crops and words in one space: open_clip models (an optional extra)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConceptsError


@dataclass
class CropRef:
    """One crop to embed: its pixels (the model-input view of the photo, cropped), the photo it comes from and the
    box (x0, y0, x1, y1) in model-input pixels (``input_size`` square)."""

    image: Image.Image
    path: str
    box: tuple[int, int, int, int]
    input_size: int


class OpenClipEncoder:
    """Crops and texts through an open_clip model: L2-normalised embeddings, ``batch_size`` at a time."""

    def __init__(self, clip, arch: str, identity: dict[str, Any], device=None, batch_size: int = 64):
        import open_clip

        from ..runtime import pick_device

        self.device = pick_device(device)
        self.clip = clip.to(self.device).eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        cfg = open_clip.get_model_preprocess_cfg(clip)
        self.preprocess = open_clip.image_transform(cfg.get("size", 224), is_train=False, mean=cfg.get("mean"),
                                                    std=cfg.get("std"), resize_mode=cfg.get("resize_mode"),
                                                    interpolation=cfg.get("interpolation"))
        self.identity = identity
        self.batch_size = int(batch_size)

    def encode_images(self, crops: list[CropRef]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(crops), self.batch_size):
                batch = torch.stack([self.preprocess(c.image.convert("RGB")) for c in crops[start:start + self.batch_size]])
                out.append(self.clip.encode_image(batch.to(self.device), normalize=True).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(list(texts[start:start + self.batch_size])).to(self.device)
                out.append(self.clip.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def load_encoder(name: str | None, checkpoint: str | None = None, *, device=None, batch_size: int = 64,
                 pretrained: bool = True) -> OpenClipEncoder:
    """``open_clip:ARCH[@TAG]`` (weights: the tag through open_clip's download, or ``checkpoint``)."""
    from ..models.openclip import ClipName, create_clip, is_open_clip
    from ..models.loading import state_dict_sha256

    if not is_open_clip(name):
        raise ConceptsError(f"label.encoder: {name!r} is not an encoder; name one as open_clip:ARCH[@TAG], e.g. "
                            "--encoder open_clip:ViT-B-32@openai (or --checkpoint PATH for local weights)")
    clip, info = create_clip(name, checkpoint, pretrained)
    identity = {"name": name, **info, "sha256": state_dict_sha256(clip.state_dict())}
    return OpenClipEncoder(clip, ClipName.parse(name).arch, identity, device=device, batch_size=batch_size)
