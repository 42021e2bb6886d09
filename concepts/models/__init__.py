"""Models: loading (timm, checkpoint, bundled EfficientNet-Lite0), preprocessing, and the split f = h o g."""
from __future__ import annotations

from typing import Any

import torch

from ..runtime import pick_device, tune_cpu_allocator
from .fusion import optimize_for_inference
from .loading import DEFAULT_MODEL, load_model
from .preprocessing import Preprocessing
from .split import ModelSplit

__all__ = ["DEFAULT_MODEL", "load_model", "load_split", "split_from_provenance", "SplitCache", "ModelSplit",
           "Preprocessing"]


def load_split(
    model: str | None = None,
    checkpoint: str | None = None,
    layer: str | None = None,
    device: str | torch.device | None = None,
    pretrained: bool = True,
    optimize: bool = True,
) -> tuple[ModelSplit, dict[str, Any]]:
    """Load a model and cut it at ``layer`` (None: the last feature map). Returns ``(split, info)``.

    With ``optimize`` the eval-mode batch norms that follow a convolution are folded into it and, on the
    CPU, the activation after it runs as a oneDNN post-op (:func:`concepts.models.fusion.optimize_for_inference`):
    the same function, a faster forward pass. The cut layer itself is left as it is.
    """
    net, info = load_model(model, checkpoint, pretrained=pretrained)
    prep = Preprocessing.from_model(net)
    target = pick_device(device)
    if target.type == "cpu":
        tune_cpu_allocator()
    net = net.to(target).eval()
    if optimize:
        example = torch.randn(2, 3, prep.input_size, prep.input_size, generator=torch.Generator().manual_seed(0))
        info.update(optimize_for_inference(net, example.to(target), keep=layer))
    split = ModelSplit(net, layer=layer, input_size=prep.input_size)
    split.preprocessing = prep
    info.update(layer=split.layer, preprocessing=prep.to_dict(), layout=split.layout, grid=list(split.grid),
                n_prefix=split.n_prefix, n_channels=split.n_channels)
    return split, info


def split_from_provenance(attrs: dict[str, Any], device: str | torch.device | None = None) -> ModelSplit:
    """Rebuild the split recorded in an artefact's attributes (model, weights, checkpoint, layer)."""
    weights = str(attrs.get("weights", ""))
    checkpoint = attrs.get("checkpoint") or None
    name = attrs.get("model")
    if weights.startswith("bundled:"):
        name, checkpoint = None, None
    pretrained = weights != "random"
    layer = attrs.get("layer")
    split, info = load_split(name, checkpoint, None if layer == "features" else layer, device, pretrained=pretrained)
    expected = attrs.get("weights_sha256")
    if expected and info["weights_sha256"] != expected:
        from ..errors import ConceptsError

        raise ConceptsError(
            f"the weights of {info['model']} have changed since the activations were extracted "
            f"(sha256 {info['weights_sha256'][:12]} != {str(expected)[:12]})"
        )
    return split


class SplitCache:
    """The split of the last provenance asked for, rebuilt only when the model, weights or layer change.

    ``split`` (optional) is one the caller already loaded; it is trusted for the first provenance asked for.
    """

    KEYS = ("model", "weights", "weights_sha256", "checkpoint", "layer")

    def __init__(self, device: str | torch.device | None = None, split: ModelSplit | None = None):
        self.device = device
        self._split = split
        self._key: tuple | None = None

    def get(self, attrs: dict[str, Any]) -> ModelSplit:
        key = tuple(str(attrs.get(k)) for k in self.KEYS)
        if self._split is not None and self._key is None:
            self._key = key
        if key != self._key:
            self._split = split_from_provenance(attrs, device=self.device)
            self._key = key
        return self._split
