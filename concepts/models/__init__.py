"""Models: loading (timm, checkpoint, bundled EfficientNet-Lite0), preprocessing, and the split f = h o g."""
from __future__ import annotations

from typing import Any

import torch

from ..runtime import pick_device
from .cache import ModelCache
from .fusion import optimize_for_inference
from .loading import DEFAULT_MODEL, load_model
from .preprocessing import Preprocessing
from .split import ModelSplit

__all__ = ["DEFAULT_MODEL", "load_model", "load_split", "layer_splits", "ModelCache", "ModelSplit", "Preprocessing"]


def load_split(
    model: str | None = None,
    checkpoint: str | None = None,
    layer: str | None = None,
    device: str | torch.device | None = None,
    pretrained: bool = True,
    optimize: bool = True,
    keep: tuple[str, ...] = (),
) -> tuple[ModelSplit, dict[str, Any]]:
    """Load a model and cut it at ``layer`` (None: the last feature map). Returns ``(split, info)``.

    With ``optimize`` the eval-mode batch norms that follow a convolution are folded into it and, on the
    CPU, the activation after it runs as a oneDNN post-op (:func:`concepts.models.fusion.optimize_for_inference`):
    the same function, a faster forward pass. The cut layer itself is left as it is, and so are the modules named
    in ``keep`` (the other layers of a several-layer extraction, :func:`layer_splits`). (On the CPU,
    :func:`concepts.runtime.configure_process` makes the forward pass ~2x faster again; the CLI calls it.)
    """
    from ..runtime import work_threads

    # loading is reading weights and checking rewrites on batches of two images: small operations, on one thread
    # (runtime.threads_for); on a shared machine two threads made it 1.4-2.5x slower, not faster
    with work_threads(0.0):
        net, info = load_model(model, checkpoint, pretrained=pretrained)
        layer = layer or getattr(net, "default_cut", None)  # e.g. before the last block of an open_clip ViT
        prep = Preprocessing.from_model(net)
        target = pick_device(device)
        net = net.to(target).eval()
        if optimize:
            example = torch.randn(2, 3, prep.input_size, prep.input_size, generator=torch.Generator().manual_seed(0))
            info.update(optimize_for_inference(net, example.to(target), keep=layer, also=keep))
        split = ModelSplit(net, layer=layer, input_size=prep.input_size)
        split.preprocessing = prep
        split.linear_head()  # checked now, on one thread, rather than at the first importance call
    info.update(layer=split.layer, preprocessing=prep.to_dict(), layout=split.layout, grid=list(split.grid),
                n_prefix=split.n_prefix, n_channels=split.n_channels, head_path=split.head_path)
    return split, info


def layer_splits(split: ModelSplit, info: dict[str, Any], layers) -> list[tuple[ModelSplit, dict[str, Any]]]:
    """``(split, info)`` of each of ``layers`` (None: the default cut) on the model of ``split``, loaded once
    (load it with ``keep=layers`` so that no listed layer is rewritten). The first entry is ``split`` itself
    when its layer comes first."""
    out = []
    for layer in layers:
        other = ModelSplit(split.model, layer=layer, input_size=split.input_size)
        if other.layer == split.layer:
            other = split
        other.preprocessing = split.preprocessing
        out.append((other, {**info, "layer": other.layer, "layout": other.layout, "grid": list(other.grid),
                            "n_prefix": other.n_prefix, "n_channels": other.n_channels}))
    return out
