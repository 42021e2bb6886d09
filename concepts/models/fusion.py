"""Inference-only rewrites of a loaded model that compute the same function, faster.

1. **Batch-norm folding.** In eval mode a batch norm is a per-channel affine map,
   ``y = (x - mean) / sqrt(var + eps) * gamma + beta``. When its input is a convolution's output and nothing
   else reads that output, the map moves into the convolution's weight and bias: one pass over each feature
   map fewer, on any device.
2. **Convolution + activation (CPU).** The activation that follows a folded norm (ReLU, ReLU6, SiLU or none)
   becomes a post-op of the oneDNN convolution (``torch.ops.mkldnn._convolution_pointwise``, the kernel
   Inductor emits for the same pattern), so the activation is applied while the output is still in cache.
   The fused module falls back to ``conv2d`` + activation whenever gradients are needed, the input is not
   on the CPU, or autocast asks for another dtype than bf16/fp32. timm's TF-style 'same' padding, which pads
   a copy of the input on every call, becomes the convolution's own padding (see :func:`_same_padding`).

Measured gains are in docs/benchmarks.md (``benchmarks/forward.py``). Pairs are found by running the model once with hooks (a norm whose input tensor *is* a
convolution's output), not by module names, so any architecture works. Each rewrite is checked against the
model before it on the same input and undone if the logits moved by more than float rounding. The module
named as the cut layer is never rewritten, so that its output keeps its meaning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

RTOL = 1e-4  # of the logits' scale; float32 rounding of a folded net is ~1e-6

# activation module type -> (oneDNN post-op name, its scalars)
_POST_OPS: dict[type, tuple[str, list[float]]] = {
    nn.ReLU: ("relu", []),
    nn.ReLU6: ("hardtanh", [0.0, 6.0]),
    nn.SiLU: ("swish", []),
    nn.Identity: ("none", []),
}


class FoldedNorm(nn.Module):
    """What is left of a norm(+activation) module once its affine map lives in the preceding convolution."""

    def __init__(self, drop: nn.Module | None = None, act: nn.Module | None = None):
        super().__init__()
        self.drop = drop if drop is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _autocast_cpu() -> torch.dtype | None:
    """The CPU autocast dtype in force, or None."""
    try:
        enabled = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu")
    except TypeError:  # torch < 2.4
        enabled = torch.is_autocast_cpu_enabled()
        dtype = torch.get_autocast_cpu_dtype()
    return dtype if enabled else None


def _pointwise_conv_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, bool] | None:
    """TF 'same' padding of one dimension as (symmetric padding, prepend a zero tap to the kernel), or None.

    TF pads ``total`` zeros, ``total // 2`` before and the rest after. When that is symmetric, it is ordinary
    padding. When one more zero goes after (even input, stride 2), a kernel with a zero tap prepended and
    ``after`` zeros on both sides computes exactly the same outputs: the extra leading input it reads is
    multiplied by 0. That avoids copying the input into a padded tensor on every call.
    """
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    before, after = total // 2, total - total // 2
    if before == after:
        return before, False
    if dilation == 1 and after == before + 1:
        return after, True
    return None


class FusedConvAct(nn.Module):
    """A 2-d convolution with its activation applied as a oneDNN post-op (CPU inference)."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module):
        super().__init__()
        self.conv = conv
        self.act = act
        self.same = type(conv).__name__ == "Conv2dSame"  # timm's TF-style dynamic 'same' padding
        self.post_op, self.scalars = _POST_OPS[type(act)]
        self._weights: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def _unfused(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    def _weights_for(self, dtype: torch.dtype, prepend: tuple[bool, bool]) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight, bias = self.conv.weight, self.conv.bias
        if dtype == torch.float32 and prepend == (False, False):
            return weight, bias
        key = (dtype, prepend, weight.device)
        if key not in self._weights:
            w = weight.detach()
            w = F.pad(w, (int(prepend[1]), 0, int(prepend[0]), 0)) if any(prepend) else w
            self._weights[key] = (w.to(dtype).contiguous(memory_format=torch.channels_last),
                                  None if bias is None else bias.detach().to(dtype))
        return self._weights[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        autocast = _autocast_cpu()
        dtype = autocast or torch.float32
        if (x.device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16) or x.ndim != 4 or x.dtype not in
                (torch.float32, torch.bfloat16) or (torch.is_grad_enabled() and (x.requires_grad or
                                                                                  conv.weight.requires_grad))):
            return self._unfused(x)
        padding, prepend = list(conv.padding), (False, False)
        if self.same:
            dims = [_same_padding(int(x.shape[2 + i]), int(conv.weight.shape[2 + i]), int(conv.stride[i]),
                                  int(conv.dilation[i])) for i in range(2)]
            if None in dims:  # a padding no symmetric convolution expresses: pad a copy, as timm does
                from timm.layers.padding import pad_same

                x = pad_same(x, conv.weight.shape[-2:], conv.stride, conv.dilation)
                padding = [0, 0]
            else:
                padding = [dims[0][0], dims[1][0]]
                prepend = (dims[0][1], dims[1][1])
        weight, bias = self._weights_for(dtype, prepend)
        return torch.ops.mkldnn._convolution_pointwise(x.to(dtype), weight, bias, padding, list(conv.stride),
                                                       list(conv.dilation), conv.groups, self.post_op,
                                                       self.scalars, "")


@dataclass
class _Pair:
    conv: nn.Conv2d
    norm: nn.BatchNorm2d
    conv_path: tuple[nn.Module, str]
    norm_path: tuple[nn.Module, str]


def _foldable_norm(module: nn.Module) -> bool:
    """Plain BatchNorm2d, or timm's BatchNormAct2d (norm, then drop, then act), with running statistics."""
    known = type(module) is nn.BatchNorm2d or (
        type(module).__name__ == "BatchNormAct2d" and hasattr(module, "act") and hasattr(module, "drop"))
    return known and module.running_mean is not None and module.running_var is not None


def _foldable_conv(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d or type(module).__name__ == "Conv2dSame") and module.padding_mode == "zeros"


def _find_pairs(model: nn.Module, example: torch.Tensor, keep: set[str]) -> list[_Pair]:
    """(convolution, norm) pairs in which the norm is the only reader of the convolution's output."""
    names = {id(m): n for n, m in model.named_modules()}
    parents = {}
    for parent in model.modules():
        for child_name, child in parent.named_children():
            parents[id(child)] = (parent, child_name)
    produced: dict[int, nn.Module] = {}
    outputs: list[torch.Tensor] = []  # keeps outputs alive so that their ids stay unique during the pass
    readers: dict[int, list[nn.Module]] = {}
    runs: dict[int, int] = {}
    handles = []

    def after_conv(module, _inputs, output):
        runs[id(module)] = runs.get(id(module), 0) + 1
        if isinstance(output, torch.Tensor):
            produced[id(output)] = module
            outputs.append(output)

    def before_module(module, inputs):
        for value in inputs:
            if isinstance(value, torch.Tensor) and id(value) in produced:
                readers.setdefault(id(produced[id(value)]), []).append(module)

    for module in model.modules():
        if _foldable_conv(module):
            handles.append(module.register_forward_hook(after_conv))
        if not list(module.children()) or _foldable_norm(module):
            handles.append(module.register_forward_pre_hook(before_module))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()

    pairs = []
    for module in model.modules():
        if not _foldable_conv(module) or runs.get(id(module)) != 1:
            continue
        read_by = readers.get(id(module), [])
        if len(read_by) != 1 or not _foldable_norm(read_by[0]):
            continue  # read by something else too, or not read by a module at all
        norm = read_by[0]
        if module.out_channels != norm.num_features or names.get(id(module)) in keep:
            continue
        if id(module) in parents and id(norm) in parents:
            pairs.append(_Pair(module, norm, parents[id(module)], parents[id(norm)]))
    return pairs


def _logits(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(example).float()


def _close(after: torch.Tensor, before: torch.Tensor) -> bool:
    scale = before.abs().max().clamp_min(1e-12)
    return bool(torch.isfinite(after).all()) and float((after - before).abs().max() / scale) <= RTOL


def _fold(pairs: list[_Pair]) -> list[tuple]:
    undo = []
    with torch.no_grad():
        for pair in pairs:
            conv, norm = pair.conv, pair.norm
            undo.append((pair, conv.weight.detach().clone(), None if conv.bias is None else conv.bias.detach().clone()))
            scale = torch.rsqrt(norm.running_var.double() + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight.double()
            shift = -norm.running_mean.double() * scale
            if norm.bias is not None:
                shift = shift + norm.bias.double()
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
            conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
            new_bias = (bias * scale + shift).to(conv.weight.dtype)
            if conv.bias is None:
                conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)
            else:
                conv.bias.copy_(new_bias)
            parent, name = pair.norm_path
            setattr(parent, name, FoldedNorm(getattr(norm, "drop", None), getattr(norm, "act", None)))
    return undo


def _unfold(undo: list[tuple]) -> None:
    with torch.no_grad():
        for pair, weight, bias in undo:
            pair.conv.weight.copy_(weight)
            if bias is None:
                pair.conv.bias = None
            else:
                pair.conv.bias.copy_(bias)
            parent, name = pair.norm_path
            setattr(parent, name, pair.norm)


def _fuse(pairs: list[_Pair]) -> list[tuple]:
    undo = []
    for pair in pairs:
        parent, name = pair.norm_path
        folded = getattr(parent, name)
        if not isinstance(folded, FoldedNorm) or type(folded.act) not in _POST_OPS \
                or not isinstance(folded.drop, nn.Identity) or isinstance(pair.conv.padding, str):
            continue
        conv_parent, conv_name = pair.conv_path
        undo.append((pair, folded.act))
        setattr(conv_parent, conv_name, FusedConvAct(pair.conv, folded.act))
        folded.act = nn.Identity()
    return undo


def _unfuse(undo: list[tuple]) -> None:
    for pair, act in undo:
        conv_parent, conv_name = pair.conv_path
        setattr(conv_parent, conv_name, pair.conv)
        parent, name = pair.norm_path
        getattr(parent, name).act = act


def optimize_for_inference(model: nn.Module, example: torch.Tensor, keep: str | None = None,
                           also=()) -> dict[str, Any]:
    """Fold batch norms into convolutions and, on the CPU, fuse the activations that follow them.

    ``model`` must be in eval mode and on ``example``'s device; ``example`` is one input batch (its values
    only decide the checks). ``keep`` names a module that must keep its output (the cut layer), ``also`` more of
    them (the other layers of a several-layer extraction). Returns
    ``{"folded_norms": n, "fused_convolutions": m}`` (m convolutions run with their activation, or none, as a
    oneDNN post-op); a rewrite whose logits differ from the model's before
    it by more than ``RTOL`` of their scale is undone and counted as 0.
    """
    if model.training:
        raise ValueError("optimize_for_inference needs a model in eval mode")
    done = {"folded_norms": 0, "fused_convolutions": 0}
    if not any(_foldable_norm(m) for m in model.modules()):
        return done
    pairs = _find_pairs(model, example, ({keep} if keep else set()) | {name for name in also if name})
    if not pairs:
        return done
    before = _logits(model, example)
    undo = _fold(pairs)
    if not _close(_logits(model, example), before):
        _unfold(undo)
        return done
    done["folded_norms"] = len(undo)
    if example.device.type == "cpu" and _pointwise_conv_available():
        fused = _fuse(pairs)
        try:
            ok = _close(_logits(model, example), before)
        except RuntimeError:  # a oneDNN build without this post-op
            ok = False
        if ok:
            done["fused_convolutions"] = len(fused)
        else:
            _unfuse(fused)
    return done

