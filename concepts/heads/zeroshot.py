"""A CLIP zero-shot head: ``logits = logit_scale * cos(image embedding, class text embedding) (+ logit_bias)``,
exactly what open_clip computes, with each class's text embedding the normalised mean of its prompts'."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConceptsError


class ZeroShotHead(nn.Module):
    """``forward(e) = scale * normalize(e) @ text.T + bias``; ``text`` (C, E) is L2-normalised.

    It is linear in the *normalised* embedding only: the image norm divides every logit, so ``h`` is not affine in
    the pooled features and the package's closed forms do not apply (``ModelSplit.linear_head`` checks it and
    reports None; importance then goes through the head, as for any non-linear head).
    """

    def __init__(self, text: torch.Tensor, logit_scale: float, logit_bias: float, classes: list[str],
                 class_names: list[str] | None = None):
        super().__init__()
        self.register_buffer("text", F.normalize(text.float(), dim=-1))
        self.logit_scale = float(logit_scale)
        self.logit_bias = float(logit_bias)
        self.classes = [str(c) for c in classes]
        self.class_names = list(class_names or self.classes)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * F.normalize(e, dim=-1) @ self.text.T.to(e.dtype) + self.logit_bias


def read_prompts(path: str | Path) -> dict[str, list[str]]:
    """``class_id,prompt`` lines (``#`` comments; a class may have several prompts, averaged as CLIP's prompt
    ensembles are). Returns class id -> prompts, in order of first appearance (the logit order)."""
    path = Path(path)
    if not path.is_file():
        raise ConceptsError(f"--head zeroshot: prompts file not found: {path}")
    prompts: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        class_id, sep, prompt = line.partition(",")
        if not sep or not class_id.strip() or not prompt.strip():
            raise ConceptsError(f"{path}:{number}: expected 'class_id,prompt text'")
        prompts.setdefault(class_id.strip(), []).append(prompt.strip())
    if not prompts:
        raise ConceptsError(f"{path} holds no prompts; expected 'class_id,prompt text' lines")
    return prompts


def zeroshot_head(tower, prompts: dict[str, list[str]]) -> ZeroShotHead:
    """The head of an :class:`~concepts.models.openclip.OpenClipImageTower` for these class prompts."""
    texts = [p for items in prompts.values() for p in items]
    embedded = tower.encode_text(texts).cpu()
    rows, start = [], 0
    for items in prompts.values():
        rows.append(F.normalize(embedded[start:start + len(items)].mean(0), dim=-1))
        start += len(items)
    scale, bias = tower.logit_scale()
    return ZeroShotHead(torch.stack(rows), scale, bias, list(prompts))


def zeroshot_provenance(path: Path, prompts: dict[str, list[str]], text_model: dict[str, Any]) -> dict[str, Any]:
    text = "\n".join(f"{c},{p}" for c, items in prompts.items() for p in items)
    return {"head": "zeroshot", "head_file": str(Path(path).resolve()),
            "head_sha256": hashlib.sha256(text.encode()).hexdigest(), "head_prompts": prompts,
            "head_text_model": text_model, "head_classes": len(prompts)}
