"""Preprocessing from the model's pretrained config (timm's data config)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from PIL import Image
from torchvision.transforms import functional as TF
from torchvision.transforms import InterpolationMode


@dataclass(frozen=True)
class Preprocessing:
    """What turns a photo into the model's input: resize (shorter side), centre crop, normalise."""

    input_size: int
    interpolation: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> "Preprocessing":
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        size = cfg["input_size"][-1]
        return cls(
            input_size=int(size),
            interpolation=str(cfg.get("interpolation", "bicubic")),
            crop_pct=float(cfg.get("crop_pct", 0.875)),
            mean=tuple(float(v) for v in cfg["mean"]),
            std=tuple(float(v) for v in cfg["std"]),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def resize_size(self) -> int:
        return int(math.floor(self.input_size / self.crop_pct))

    def _mode(self) -> InterpolationMode:
        return {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                "nearest": InterpolationMode.NEAREST}.get(self.interpolation, InterpolationMode.BICUBIC)

    def view(self, image: Image.Image) -> Image.Image:
        """The photo as the model sees it, before normalisation (input_size x input_size RGB)."""
        image = TF.resize(image, self.resize_size, interpolation=self._mode())
        return TF.center_crop(image, [self.input_size, self.input_size])

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """Unnormalised float tensor (3, S, S) in [0, 1] of the model-input view."""
        return TF.to_tensor(self.view(image))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch (B,3,H,W) or image (3,H,W) in [0, 1]."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std
