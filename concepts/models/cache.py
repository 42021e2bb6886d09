"""One model cache: the split of the last model asked for, by settings or by an artefact's provenance.

Stages ask it for a model instead of loading one, so a process that runs several stages (``concepts run``, a
notebook) loads each model once; one model is kept in memory at a time.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConceptsError


class ModelCache:
    """``get(name, checkpoint, layer, pretrained)`` and ``for_artefact(attrs)`` return ``(split, info)``."""

    def __init__(self, device: Any = None):
        self.device = device
        self._keys: set[tuple] = set()
        self._entry: tuple[Any, dict[str, Any]] | None = None
        self._kept: frozenset = frozenset()  # layers loaded unrewritten besides the cut (several-layer runs)
        self._others: dict[str, tuple[Any, dict[str, Any]]] = {}  # splits of the kept layers on the same model

    @staticmethod
    def _key(name, checkpoint, layer, pretrained, device) -> tuple:
        return (name or None, str(checkpoint) if checkpoint else None, layer or "features", bool(pretrained),
                str(device))

    def put(self, split: Any, info: dict[str, Any], name=None, checkpoint=None, layer=None, pretrained=True) -> None:
        """Keep a split the caller loaded (it is then returned for the same model and cut)."""
        device = str(split.device)
        self._keys = {self._key(name, checkpoint, layer, pretrained, device),
                      self._key(name, checkpoint, info.get("layer"), pretrained, device)}
        self._entry = (split, info)
        self._kept, self._others = frozenset(), {}

    def adopt(self, split: Any, attrs: dict[str, Any]) -> None:
        """Use ``split`` for the artefacts whose provenance is ``attrs`` (a model that cannot be rebuilt from its
        name, e.g. one made in a notebook or a test)."""
        weights = str(attrs.get("weights", ""))
        name = None if weights.startswith("bundled:") else attrs.get("model")
        info = {"model": attrs.get("model"), "weights_sha256": attrs.get("weights_sha256"),
                "layer": attrs.get("layer")}
        self.put(split, info, name, attrs.get("checkpoint") or None, attrs.get("layer"), weights != "random")

    def get(self, name: str | None = None, checkpoint: str | None = None, layer: str | None = None,
            pretrained: bool = True, device: Any = None, keep: tuple = ()) -> tuple[Any, dict[str, Any]]:
        """The split at ``layer``. ``keep``: more layers that must keep their output (a several-layer pass); the
        model is then loaded once for all of them, and ``get`` at any of them cuts that same model."""
        from ..runtime import pick_device
        from . import load_split

        device = pick_device(self.device if device is None else device)
        keep = frozenset(k for k in keep if k)
        key = self._key(name, checkpoint, layer, pretrained, device)
        if self._entry is not None and keep <= self._kept | {self._entry[1].get("layer")}:
            if key in self._keys:
                return self._entry
            if layer in self._kept and any(k[:2] + k[3:] == key[:2] + key[3:] for k in self._keys):
                if layer not in self._others:
                    from . import layer_splits

                    self._others[layer] = layer_splits(*self._entry, [layer])[0]
                return self._others[layer]
        self.clear()
        split, info = load_split(name, checkpoint, layer, device, pretrained=pretrained, keep=tuple(sorted(keep)))
        self.put(split, info, name, checkpoint, layer, pretrained)
        self._kept = keep
        return split, info

    def for_artefact(self, attrs: dict[str, Any], device: Any = None, keep: tuple = ()) -> Any:
        """The split recorded in an artefact's provenance (model, weights, checkpoint, layer), checked against the
        weights it was made with; ``keep``: other layers asked for next (see :meth:`get`)."""
        weights = str(attrs.get("weights", ""))
        name, checkpoint = attrs.get("model"), attrs.get("checkpoint") or None
        if weights.startswith("bundled:"):
            name, checkpoint = None, None
        split, info = self.get(name, checkpoint, attrs.get("layer"), pretrained=weights != "random", device=device,
                               keep=keep)
        expected = attrs.get("weights_sha256")
        if expected and info["weights_sha256"] != expected:
            raise ConceptsError(
                f"the weights of {info['model']} have changed since the activations were extracted "
                f"(sha256 {info['weights_sha256'][:12]} != {str(expected)[:12]})")
        return split

    def clear(self) -> None:
        self._keys, self._entry, self._kept, self._others = set(), None, frozenset(), {}
