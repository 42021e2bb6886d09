"""What a visualisation maximises: a concept direction at the cut layer, or a class logit.

A :class:`Target` names one image's goal. :class:`Objective` scores a batch of crops in which every crop belongs
to one image (``owner``) and is scored for that image's target, so that many targets share one forward pass:

* a direction ``v`` (a concept atom): ``dot(a, v) * max(cos(a, v), floor) ** power`` with ``a`` the crop's
  activation at the cut layer, averaged over positions (MACO / Lens; lucid's "dot x cos^p" objective);
* a logit: the class logit ``h(g(crop))[index]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class Target:
    """One visualisation's goal: ``kind`` 'concept' (``index`` into the directions) or 'logit' (a logit index)."""

    kind: str
    index: int

    def __post_init__(self):
        if self.kind not in ("concept", "logit"):
            raise ValueError(f"unknown target kind {self.kind!r}")

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.index}"

    @classmethod
    def parse(cls, name: str) -> "Target":
        kind, _, index = str(name).partition(":")
        return cls(kind, int(index))


def pooled(split, activations: torch.Tensor) -> torch.Tensor:
    """The activation of each image averaged over its positions (prefix tokens left out): (B, D)."""
    return split.positions(activations).mean(dim=1)


class Objective:
    """Scores crops for their images' targets (see the module docstring).

    ``split``: a :class:`~concepts.models.ModelSplit`; ``directions``: (r, D) atoms, the targets' concept indices
    refer to its rows; ``mean``/``std``: the model's input normalisation (crops arrive in [0, 1]).
    """

    def __init__(self, split, targets: Sequence[Target], directions: torch.Tensor | None, *, mean, std,
                 power: float = 2.0, floor: float = 0.1):
        self.split = split
        self.targets = list(targets)
        device = split.device
        self.directions = None if directions is None else torch.as_tensor(directions, dtype=torch.float32,
                                                                            device=device)
        if any(t.kind == "concept" for t in self.targets) and self.directions is None:
            raise ValueError("concept targets need directions")
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.power, self.floor = float(power), float(floor)

    def normalise(self, crops: torch.Tensor) -> torch.Tensor:
        return (crops - self.mean) / self.std

    def activations(self, crops: torch.Tensor) -> torch.Tensor:
        """``g`` of crops in [0, 1] (normalised first)."""
        return self.split.g(self.normalise(crops))

    def direction_score(self, vectors: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """``dot(a, v) * max(cos(a, v), floor) ** power`` row by row."""
        dot = (vectors * directions).sum(dim=-1)
        cos = dot / (vectors.norm(dim=-1) * directions.norm(dim=-1) + 1e-8)
        return dot * cos.clamp(min=self.floor) ** self.power

    def score_activations(self, activations: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """(B,) scores of crops whose activations are ``activations``; ``owner[b]`` indexes ``targets``."""
        owner = owner.to(activations.device)
        kinds = torch.tensor([t.kind == "concept" for t in self.targets], device=activations.device)
        indices = torch.tensor([t.index for t in self.targets], device=activations.device)
        is_concept = kinds[owner]
        scores = torch.zeros(len(owner), device=activations.device, dtype=torch.float32)
        if bool(is_concept.any()):
            rows = torch.nonzero(is_concept).flatten()
            vectors = pooled(self.split, activations[rows]).float()
            scores = scores.index_put((rows,), self.direction_score(vectors, self.directions[indices[owner[rows]]]))
        if not bool(is_concept.all()):
            rows = torch.nonzero(~is_concept).flatten()
            logits = self.split.h(activations[rows]).float()
            scores = scores.index_put((rows,), logits.gather(1, indices[owner[rows]][:, None])[:, 0])
        return scores

    def __call__(self, crops: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        return self.score_activations(self.activations(crops), owner)
