"""A linear head: ``logits = features @ weight.T + bias`` with the class ids of its rows."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConceptsError
from ..schema.hashing import file_sha256
from ..schema.probe import ProbeFile, read_probe


class LinearHead(nn.Linear):
    """An ``nn.Linear`` (so that ``ModelSplit.linear_head`` recognises it) that knows its classes."""

    def __init__(self, weight, bias, classes: list[str], class_names: list[str] | None = None):
        weight = torch.as_tensor(np.asarray(weight, np.float32))
        super().__init__(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(torch.as_tensor(np.asarray(bias, np.float32)))
        self.classes = [str(c) for c in classes]
        self.class_names = list(class_names or self.classes)
        self.requires_grad_(False)


def read_linear_head(path: str | Path) -> tuple[LinearHead, dict[str, Any]]:
    """A head from a probe ``.npz`` (``concepts probe``) or a torch file holding ``weight``, ``bias``,
    ``classes`` (and optionally ``class_names``); returns ``(head, provenance)``."""
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".bin"):
        probe = _read_torch(path)
    else:
        probe = read_probe(path)
    head = LinearHead(probe.weight, probe.bias, probe.classes, probe.class_names)
    meta = probe.meta
    provenance = {"head": "probe", "head_file": str(path.resolve()), "head_sha256": probe.sha256,
                  "head_id": probe.identity, "head_classes": len(probe.classes),
                  "head_accuracy": meta.get("accuracy"), "head_features": meta.get("features")}
    return head, provenance


def _read_torch(path: Path) -> ProbeFile:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is one line
        raise ConceptsError(f"cannot read the head file {path}: {' '.join(str(exc).split())[:200]}") from exc
    if not isinstance(data, dict) or not {"weight", "bias", "classes"} <= set(data):
        raise ConceptsError(f"{path}: a head file holds 'weight' (C, D), 'bias' (C,) and 'classes' (C names)")
    weight = np.asarray(torch.as_tensor(data["weight"]).float())
    bias = np.asarray(torch.as_tensor(data["bias"]).float()).reshape(-1)
    classes = [str(c) for c in data["classes"]]
    if weight.ndim != 2 or bias.shape != (weight.shape[0],) or len(classes) != weight.shape[0]:
        raise ConceptsError(f"{path}: weight {weight.shape}, bias {bias.shape} and {len(classes)} classes do not "
                            "agree (expected (C, D), (C,), C)")
    names = [str(c) for c in data.get("class_names", classes)]
    return ProbeFile(weight, bias, classes, names, {}, path, file_sha256(path))
