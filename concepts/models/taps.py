"""Several cuts of one model in one forward pass: :class:`LayerTap` (a several-layer extraction).

Every :class:`~concepts.models.split.ModelSplit` given cuts the same loaded model at its own layer. One call runs
the model once with a forward hook on each named layer (and timm's ``forward_features`` / ``forward_head``
boundary for the default cut) and returns every layer's activations, channels last as ``split.g`` gives them, and
the logits of that same pass. Without logits the pass stops as soon as every layer is captured.
"""
from __future__ import annotations

import torch

from ..errors import ConceptsError
from .split import ModelSplit, _Stop


class LayerTap:
    """``tap(x) -> ({layer: activations}, logits or None)`` for splits of one model (``split.layer`` names)."""

    def __init__(self, splits: list[ModelSplit]):
        if not splits or any(s.model is not splits[0].model for s in splits):
            raise ValueError("LayerTap needs splits of one and the same model")
        self.splits = list(splits)
        self.model = splits[0].model
        self._features = [i for i, s in enumerate(self.splits) if s._module is None]

    def _hook(self, i: int, captured: dict, stop: bool):
        def hook(_module, _inputs, output):
            if i in captured:  # a module run twice: its first output, as ModelSplit.g
                return
            if not isinstance(output, torch.Tensor):
                raise ConceptsError(f"layer {self.splits[i].layer!r} returns {type(output).__name__}, not a tensor")
            captured[i] = output
            if stop and len(captured) == len(self.splits):
                raise _Stop

        return hook

    def _forward(self, x: torch.Tensor, captured: dict, logits: bool) -> torch.Tensor | None:
        if not self._features:
            return self.model(x)
        features = self.model.forward_features(x)
        for i in self._features:
            captured[i] = features
        if logits or len(captured) < len(self.splits):  # a named layer inside the head
            return self.model.forward_head(features)
        return None

    def __call__(self, x: torch.Tensor, logits: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        if self.splits[0]._channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        captured: dict[int, torch.Tensor] = {}
        handles = [s._module.register_forward_hook(self._hook(i, captured, not logits))
                   for i, s in enumerate(self.splits) if s._module is not None]
        out = None
        try:
            out = self._forward(x, captured, logits)
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [self.splits[i].layer for i in range(len(self.splits)) if i not in captured]
        if missing:
            raise ConceptsError(f"layer(s) {', '.join(map(repr, missing))} not used in the model's forward pass")
        acts = {s.layer: s._to_channels_last(captured[i]) for i, s in enumerate(self.splits)}
        return acts, out if logits else None
