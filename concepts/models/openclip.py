"""CLIP-style models through ``open_clip`` (an optional extra: ``pip install open-clip-torch``).

``--model open_clip:ARCH[@TAG]`` names an open_clip architecture (``ViT-B-32``, ``ViT-B-16-SigLIP`` ...) and the
weights to load: ``TAG`` is one of open_clip's pretrained tags (downloaded by open_clip itself, into its cache, when
online; the default is the architecture's first tag), ``--checkpoint PATH`` a local open_clip checkpoint, and
``--random-init`` random weights. Offline without weights, loading stops with one line that says so.

The image tower is wrapped in :class:`OpenClipImageTower`, which gives it what the rest of the package expects of a
timm model: a classifier slot (``get_classifier``, empty: the tower outputs the image embedding), a default cut
(before the last block of a ViT, whose class token is read out; after ``layer4`` of a ModifiedResNet) and the
preprocessing open_clip uses. The text tower stays beside it (``tower.clip``) for the zero-shot head and the concept
names; it is not part of the weights hash of the activations, which covers the image tower only.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConceptsError

PREFIX = "open_clip:"
RANDOM_INIT_SEED = 0


def is_open_clip(name: str | None) -> bool:
    return bool(name) and str(name).startswith(PREFIX)


def require_open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise ConceptsError("open_clip is not installed: pip install open-clip-torch (or pip install "
                            "'concepts[clip]')") from exc
    return open_clip


@dataclass(frozen=True)
class ClipName:
    """``open_clip:ARCH[@TAG]`` taken apart."""

    arch: str
    tag: str | None

    @classmethod
    def parse(cls, name: str) -> "ClipName":
        body = str(name)[len(PREFIX):] if is_open_clip(name) else str(name)
        arch, _, tag = body.partition("@")
        if not arch:
            raise ConceptsError(f"model {name!r}: expected open_clip:ARCH or open_clip:ARCH@TAG, e.g. "
                                "open_clip:ViT-B-32@openai")
        return cls(arch, tag or None)


class OpenClipImageTower(nn.Module):
    """An open_clip image tower with a timm-like surface: ``forward`` gives the image embedding (or, with a
    classifier set, its class scores), ``get_classifier`` the classifier slot (``head``), ``default_cut`` the
    module where the package cuts it."""

    def __init__(self, clip: nn.Module, arch: str):
        super().__init__()
        self.visual = clip.visual
        self.head = nn.Identity()
        self.num_classes = 0
        self.arch = arch
        object.__setattr__(self, "clip", clip)  # text tower kept beside it, not a submodule (not hashed, not moved)
        self.pretrained_cfg = _data_config(clip)
        self.default_cfg = self.pretrained_cfg
        self.num_prefix_tokens = 1 if hasattr(self.visual, "class_embedding") else 0
        self.default_cut = _default_cut(self.visual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def encode_text(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """L2-normalised text embeddings (len(texts), E) of the text tower, on the tower's device."""
        import open_clip

        tokenizer = open_clip.get_tokenizer(self.arch)
        device = next(self.visual.parameters()).device
        text_model = self.clip.to(device)
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                tokens = tokenizer(list(texts[start:start + batch_size])).to(device)
                out.append(text_model.encode_text(tokens, normalize=True).float())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim, device=device)

    @property
    def embed_dim(self) -> int:
        return int(getattr(self.visual, "output_dim", 0) or self.clip.text_projection.shape[-1])

    def logit_scale(self) -> tuple[float, float]:
        """open_clip's ``exp(logit_scale)`` and ``logit_bias`` (0 for CLIP, learnt for SigLIP)."""
        scale = float(self.clip.logit_scale.detach().exp())
        bias = getattr(self.clip, "logit_bias", None)
        return scale, float(bias.detach()) if bias is not None else 0.0


def _data_config(clip: nn.Module) -> dict[str, Any]:
    """timm's data config of the tower, from open_clip's preprocessing (resize the short side, centre crop)."""
    import open_clip

    cfg = open_clip.get_model_preprocess_cfg(clip)
    size = cfg.get("size", 224)
    size = int(size[-1] if isinstance(size, (tuple, list)) else size)
    return {"input_size": (3, size, size), "interpolation": str(cfg.get("interpolation", "bicubic")),
            "crop_pct": 1.0, "mean": tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
            "std": tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)), "num_classes": 0}


def _default_cut(visual: nn.Module) -> str | None:
    transformer = getattr(visual, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if isinstance(blocks, nn.ModuleList) and len(blocks) >= 2:
        if not getattr(transformer, "batch_first", True):
            raise ConceptsError("this open_clip version runs its vision transformer sequence-first; upgrade "
                                "open-clip-torch (>= 2.24)")
        last = len(blocks) - 2 if getattr(visual, "pool_type", "tok") == "tok" else len(blocks) - 1
        return f"visual.transformer.resblocks.{last}"
    if hasattr(visual, "layer4") and hasattr(visual, "attnpool"):
        return "visual.layer4"
    return None


@contextlib.contextmanager
def _quiet_logging():
    """open_clip logs its failures on the root logger before raising them; the user gets our one line instead."""
    before = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(before)


def create_clip(name: str, checkpoint: str | None = None, pretrained: bool = True) -> tuple[nn.Module, dict]:
    """The whole open_clip model (eval mode) and its weights provenance (``weights``, ``checkpoint``)."""
    open_clip = require_open_clip()
    parsed = ClipName.parse(name)
    if parsed.arch not in open_clip.list_models():
        raise ConceptsError(f"unknown open_clip architecture {parsed.arch!r}; e.g. "
                            f"{', '.join(open_clip.list_models()[:5])} (open_clip.list_models())")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ConceptsError(f"checkpoint not found: {path}")
        try:
            with _quiet_logging():
                clip = open_clip.create_model(parsed.arch, pretrained=str(path), pretrained_text=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable or mismatched file is one line
            raise ConceptsError(f"cannot load {path} into open_clip {parsed.arch}: {_one_line(exc)}") from exc
        return clip.eval(), {"weights": f"checkpoint:{path.resolve()}", "checkpoint": str(path.resolve())}
    if not pretrained:
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(RANDOM_INIT_SEED)
            clip = open_clip.create_model(parsed.arch, pretrained=None, pretrained_text=False)
        return clip.eval(), {"weights": "random", "checkpoint": None}
    tags = open_clip.list_pretrained_tags_by_model(parsed.arch)
    tag = parsed.tag or (tags[0] if tags else None)
    if tag is None:
        raise ConceptsError(f"open_clip lists no pretrained weights for {parsed.arch}; pass --checkpoint PATH")
    try:
        with _quiet_logging():
            clip = open_clip.create_model(parsed.arch, pretrained=tag)
    except Exception as exc:  # noqa: BLE001 - offline, unknown tag, interrupted download
        raise ConceptsError(f"could not get the open_clip weights {parsed.arch}@{tag} (offline? "
                            f"{type(exc).__name__}); download them once online, or pass --checkpoint PATH with a "
                            "local open_clip checkpoint") from None
    return clip.eval(), {"weights": f"open_clip:{tag}", "checkpoint": None}


def load_tower(name: str, checkpoint: str | None = None, pretrained: bool = True) -> tuple[OpenClipImageTower, dict]:
    """``(image tower, info)`` for ``load_model`` (``info``: model, weights, weights_sha256, checkpoint)."""
    from .loading import state_dict_sha256

    clip, info = create_clip(name, checkpoint, pretrained)
    arch = ClipName.parse(name).arch
    tower = OpenClipImageTower(clip, arch)
    info.update(model=name if is_open_clip(name) else PREFIX + name,
                weights_sha256=state_dict_sha256(tower.visual.state_dict()))
    return tower.eval(), info


def text_model_id(tower: OpenClipImageTower, info: dict[str, Any]) -> dict[str, Any]:
    """What identifies the text tower: the model name, its weights and the sha256 of its parameters."""
    text = {k: v for k, v in tower.clip.state_dict().items() if not k.startswith("visual.")}
    digest = hashlib.sha256()
    for key in sorted(text):
        digest.update(key.encode())
        digest.update(text[key].detach().float().cpu().numpy().tobytes())
    return {"model": info.get("model"), "weights": info.get("weights"), "sha256": digest.hexdigest()}


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
