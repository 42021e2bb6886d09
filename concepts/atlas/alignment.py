"""Concept-to-class alignment (as in Lens): the cosine between a concept vector and each class's weights in the
model's linear head, so a reader sees which classes a concept pushes up besides its own.

The head is read once per atlas build: the model recorded in the activations is rebuilt through
:class:`~concepts.models.ModelCache` and cut as the run was; ``split.linear_head()`` gives ``(weight, bias)``
only for a global-average-pool + linear head, the case where the alignment means what it says. Without such a
head (or when the model cannot be loaded) the atlas says why and shows no alignment.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConceptsError
from .analysis import unit_rows


@dataclass
class Head:
    """The rows of a linear head, scaled to length 1, and their number."""

    unit_weight: np.ndarray  # (C, D) float32
    bias: np.ndarray  # (C,)

    @property
    def n_classes(self) -> int:
        return int(self.unit_weight.shape[0])


class HeadLoader:
    """Loads the linear head of each model a run was made with, once (``load(attrs)`` -> Head | None, and why)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._heads: dict[tuple, tuple[Head | None, str]] = {}

    def load(self, attrs: dict) -> tuple[Head | None, str]:
        if not self.enabled:
            return None, "alignment turned off (atlas.alignment)"
        key = (attrs.get("model"), attrs.get("weights"), attrs.get("weights_sha256"), attrs.get("layer"),
               attrs.get("checkpoint"))
        if key not in self._heads:
            self._heads[key] = self._read(attrs)
        return self._heads[key]

    @staticmethod
    def _read(attrs: dict) -> tuple[Head | None, str]:
        from ..models import ModelCache

        try:
            split = ModelCache(device="cpu").for_artefact(attrs)
        except ConceptsError as exc:
            return None, f"the model could not be loaded ({exc})"
        head = split.linear_head()
        if head is None:
            return None, "the model's head is not global-average-pool + linear at this layer"
        weight, bias = (np.asarray(t.detach().cpu().numpy(), np.float32) for t in head)
        return Head(unit_rows(weight).astype(np.float32), bias), ""


def align(bank: np.ndarray, head: Head, k: int, own: int) -> list[dict]:
    """For each concept of ``bank``: its ``k`` best-aligned classes ``[(class_index, cosine)]`` and the rank
    (1 = best) of the class ``own`` among all the head's classes."""
    if bank.shape[1] != head.unit_weight.shape[1]:
        return [{"top": [], "own_rank": None, "own_cosine": None} for _ in range(len(bank))]
    cosine = unit_rows(bank).astype(np.float32) @ head.unit_weight.T  # (r, C)
    out = []
    for row in cosine:
        order = np.argsort(-row, kind="stable")
        own_rank = int(np.flatnonzero(order == own)[0]) + 1 if 0 <= own < len(row) else None
        out.append({"top": [(int(c), float(row[c])) for c in order[:k]], "own_rank": own_rank,
                    "own_cosine": float(row[own]) if own_rank is not None else None})
    return out
