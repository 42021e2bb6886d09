"""The model split f = h o g at a layer (DESIGN.md §2).

``g`` maps images to activations in channels-last layout: ``(B, H, W, D)`` for feature maps or
``(B, P+T, D)`` for transformer tokens (P prefix tokens first). ``h`` maps (possibly edited)
activations back to logits. The default cut is timm's ``forward_features`` / ``forward_head``
boundary (the last feature map before pooling), except for transformers that read out the class
token, which are cut before their last block (see :func:`default_token_cut`); any named module can be
the cut, through forward hooks (then everything downstream must depend on that module's output only).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConceptsError


class _Stop(Exception):
    pass


def default_token_cut(model: nn.Module) -> str | None:
    """The default cut of a transformer whose head reads the class token: the input of its last block.

    After the last block the class token is final, so editing the patch tokens there cannot change the logit
    (every concept would get zero importance). One block earlier, the class token still attends to them.
    """
    blocks = getattr(model, "blocks", None)
    if getattr(model, "global_pool", None) == "token" and isinstance(blocks, nn.Sequential) and len(blocks) >= 2:
        return f"blocks.{len(blocks) - 2}"
    return None


def _tail_blocks(model: nn.Module, layer: str | None) -> list[nn.Module] | None:
    """The blocks after a cut named ``blocks.{i}`` when the model is a timm-style transformer (``blocks``
    sequential, then ``norm`` and ``forward_head``); None otherwise."""
    blocks = getattr(model, "blocks", None)
    if not (layer and layer.startswith("blocks.") and isinstance(blocks, nn.Sequential)):
        return None
    if not (hasattr(model, "norm") and hasattr(model, "forward_head")):
        return None
    try:
        index = int(layer.split(".", 1)[1])
    except ValueError:
        return None
    rest = list(blocks)[index + 1:]
    return rest or None


def _reads_class_token(model: nn.Module) -> bool:
    return (getattr(model, "global_pool", None) == "token" and getattr(model, "attn_pool", None) is None
            and int(getattr(model, "num_prefix_tokens", 0) or 0) >= 1)


def _class_token_block_supported(block: nn.Module) -> bool:
    attn = getattr(block, "attn", None)
    needed = ("norm1", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
    return all(hasattr(block, n) for n in needed) and attn is not None and all(
        hasattr(attn, n) for n in ("qkv", "num_heads", "head_dim", "q_norm", "k_norm", "proj"))


def class_token_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm pre-norm transformer block evaluated for the class token (position 0) only: (B, T, D) -> (B, 1, D).

    Keys and values come from every token; the query, the attention row, the projection and the MLP are those of
    the class token alone, which is all a head reading the class token depends on."""
    attn = block.attn
    y = block.norm1(x)
    batch, tokens, _ = y.shape
    heads, head_dim = int(attn.num_heads), int(attn.head_dim)
    width = heads * head_dim
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(y[:, :1], weight[:width], None if bias is None else bias[:width])
    kv = F.linear(y, weight[width:], None if bias is None else bias[width:])
    q = q.reshape(batch, 1, heads, head_dim).transpose(1, 2)
    k, v = kv.reshape(batch, tokens, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, 1, head_dim)
    out = out.transpose(1, 2).reshape(batch, 1, width)
    out = attn.norm(out) if hasattr(attn, "norm") else out
    gate = getattr(attn, "gate", None)
    if gate is not None:
        out = out * gate(y[:, :1]).sigmoid()
    out = attn.proj(out)
    x0 = x[:, :1] + block.drop_path1(block.ls1(out))
    return x0 + block.drop_path2(block.ls2(block.mlp(block.norm2(x0))))


def _run_tail(model: nn.Module, tail: list[nn.Module], raw: torch.Tensor, class_token: bool) -> torch.Tensor:
    x = raw
    for block in tail[:-1] if class_token else tail:
        x = block(x)
    if class_token:
        x = class_token_block(tail[-1], x)
    return model.forward_head(model.norm(x))


class ModelSplit(nn.Module):
    def __init__(self, model: nn.Module, layer: str | None = None, input_size: int = 224):
        super().__init__()
        self.model = model.eval()
        self.layer = layer
        self.input_size = int(input_size)
        self._module = None
        if layer in (None, "", "features"):
            layer = default_token_cut(model) or layer
        if layer not in (None, "", "features"):
            modules = dict(model.named_modules())
            if layer not in modules:
                names = [n for n in modules if n and n.count(".") <= 1]
                raise ConceptsError(
                    f"unknown layer {layer!r}; top-level modules: {', '.join(names[:25])}"
                    + (" ..." if len(names) > 25 else "")
                )
            self._module = modules[layer]
        elif not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
            raise ConceptsError("this model has no forward_features/forward_head; name a cut with --layer MODULE")
        self.layer = layer if self._module is not None else "features"
        self._native_nhwc = str(getattr(model, "output_fmt", "NCHW")) == "NHWC"  # e.g. timm's Swin
        # Convolutional models run faster in channels-last memory (oneDNN on CPU, tensor cores on CUDA);
        # the values are the same up to float rounding.
        self._channels_last = any(isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules()) \
            and not any(type(m).__name__ == "PatchEmbed" for m in model.modules())
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._fast_h = None
        self.fast_head = True  # False: h through the hooked whole model (the reference the fast paths are checked on)
        self.head_path = "forward_head" if self._module is None else "hooks"
        self._probe()
        self._setup_fast_head()

    # ------------------------------------------------------------------ introspection
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _probe(self) -> None:
        with torch.no_grad():
            x = torch.zeros(1, 3, self.input_size, self.input_size, device=self.device)
            raw = self._raw_g(x)
        if raw.ndim == 4:
            self.layout = "spatial"
            if self._native_nhwc:
                _, h, w, d = raw.shape
            else:
                _, d, h, w = raw.shape
            self.grid = (int(h), int(w))
            self.n_prefix = 0
        elif raw.ndim == 3:
            self.layout = "tokens"
            self.n_prefix = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
            tokens = raw.shape[1] - self.n_prefix
            side = int(round(math.sqrt(tokens)))
            grid = getattr(getattr(self.model, "patch_embed", None), "grid_size", None)
            if grid is not None and int(grid[0]) * int(grid[1]) == tokens:
                self.grid = (int(grid[0]), int(grid[1]))
            elif side * side == tokens:
                self.grid = (side, side)
            else:
                self.grid = (1, tokens)
            d = raw.shape[2]
        elif raw.ndim == 2:
            self.layout = "spatial"
            self.grid = (1, 1)
            self.n_prefix = 0
            d = raw.shape[1]
        else:
            raise ConceptsError(f"layer {self.layer!r} gives a {raw.ndim}-d output; expected a feature map or tokens")
        self.n_channels = int(d)
        self._raw_ndim = raw.ndim

    # ------------------------------------------------------------------ fast head for transformer cuts
    def _setup_fast_head(self) -> None:
        """For a cut at ``blocks.{i}`` of a timm transformer, run only what follows the cut: ``blocks[i+1:]``,
        ``norm`` and ``forward_head``, and, when the head reads the class token alone, the last block for the
        class token only (its keys and values still come from every token). Each shortcut is kept only if it
        gives the logits of the hooked path (the whole model with the cut's output replaced) on a random batch."""
        tail = _tail_blocks(self.model, self.layer)
        if tail is None:
            return
        candidates = []
        if _reads_class_token(self.model) and _class_token_block_supported(tail[-1]):
            candidates.append(("class-token", lambda raw: _run_tail(self.model, tail, raw, class_token=True)))
        candidates.append(("tail", lambda raw: _run_tail(self.model, tail, raw, class_token=False)))
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, self.input_size, self.input_size, generator=gen).to(self.device)
        with torch.no_grad():
            raw = self._raw_g(x)
            raw = raw + 0.5 * torch.randn(raw.shape, generator=gen).to(raw) * raw.std()  # not only g's outputs
            want = self._hooked_h(raw)
            scale = float(want.abs().max()) or 1.0
            for name, fn in candidates:
                try:
                    got = fn(raw)
                except Exception:  # noqa: BLE001 - an unexpected block layout: keep the hooked path
                    continue
                if got.shape == want.shape and float((got - want).abs().max()) <= 1e-4 * scale:
                    self._fast_h, self.head_path = fn, name
                    self._tail = tail
                    return

    def factored_head(self, coefficients: torch.Tensor, components: torch.Tensor, residual: torch.Tensor | None,
                      prefix: torch.Tensor | None):
        """A :class:`~concepts.models.factored.FactoredClassTokenHead` for these coefficients, bank, residual and
        prefix, when ``h`` is one class-token block plus the head (the default cut of a ViT); else None.
        Its logits for ``(images, masks)`` are ``h_positions((U[images] ⊙ masks) W + R[images], prefix[images])``."""
        from .factored import FactoredClassTokenHead, factored_block_supported

        tail = getattr(self, "_tail", None)
        if not self.fast_head or self.head_path != "class-token" or tail is None or len(tail) != 1 or prefix is None:
            return None
        if not factored_block_supported(tail[0]):
            return None
        model = self.model
        return FactoredClassTokenHead(tail[0], lambda x: model.forward_head(model.norm(x)), coefficients,
                                      components, residual, prefix)

    # ------------------------------------------------------------------ raw (native layout) halves
    def _raw_g(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._module is None:
            return self.model.forward_features(x)
        captured = {}

        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor):
                raise ConceptsError(f"layer {self.layer!r} returns {type(output).__name__}, not a tensor")
            captured["out"] = output
            raise _Stop

        handle = self._module.register_forward_hook(hook)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if "out" not in captured:
            raise ConceptsError(f"layer {self.layer!r} is not used in the model's forward pass")
        return captured["out"]

    def _raw_h(self, raw: torch.Tensor) -> torch.Tensor:
        if self._module is None:
            return self.model.forward_head(raw)
        if self._fast_h is not None and self.fast_head:
            return self._fast_h(raw)
        return self._hooked_h(raw)

    def _hooked_h(self, raw: torch.Tensor) -> torch.Tensor:
        """``h`` through forward hooks: the whole model on a dummy input, the cut's output replaced by ``raw``
        (correct for any cut, but it pays the layers before the cut again)."""

        def hook(_module, _inputs, _output):
            return raw

        dummy = torch.zeros(raw.shape[0], 3, self.input_size, self.input_size, device=raw.device, dtype=raw.dtype)
        handle = self._module.register_forward_hook(hook)
        try:
            return self.model(dummy)
        finally:
            handle.remove()

    def _to_channels_last(self, raw: torch.Tensor) -> torch.Tensor:
        if self._raw_ndim == 4 and not self._native_nhwc:
            return raw.permute(0, 2, 3, 1)
        if self._raw_ndim == 2:
            return raw[:, None, None, :]
        return raw

    def _to_native(self, a: torch.Tensor) -> torch.Tensor:
        if self._raw_ndim == 4 and not self._native_nhwc:
            return a.permute(0, 3, 1, 2).contiguous()
        if self._raw_ndim == 2:
            return a[:, 0, 0, :]
        return a

    # ------------------------------------------------------------------ public halves
    def g(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B,3,S,S), normalised -> activations, channels last."""
        return self._to_channels_last(self._raw_g(x))

    def h(self, a: torch.Tensor) -> torch.Tensor:
        """Activations (as returned by ``g``, possibly edited) -> logits (B, C)."""
        return self._raw_h(self._to_native(a))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(self.g(x))

    def positions(self, a: torch.Tensor) -> torch.Tensor:
        """Concept rows of each image: (B, N, D), prefix tokens removed."""
        if self.layout == "tokens":
            return a[:, self.n_prefix:]
        return a.reshape(a.shape[0], -1, a.shape[-1])

    def prefix(self, a: torch.Tensor) -> torch.Tensor | None:
        if self.layout == "tokens" and self.n_prefix:
            return a[:, : self.n_prefix]
        return None

    def from_positions(self, pos: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Inverse of :meth:`positions` (prefix tokens re-inserted)."""
        if self.layout == "tokens":
            if self.n_prefix:
                if prefix is None:
                    raise ValueError("this model has prefix tokens: pass them to rebuild its activations")
                return torch.cat([prefix.to(pos.dtype), pos], dim=1)
            return pos
        return pos.reshape(pos.shape[0], self.grid[0], self.grid[1], pos.shape[-1])

    def h_positions(self, pos: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from concept rows (B, N, D) (and prefix tokens for transformers)."""
        return self.h(self.from_positions(pos, prefix))

    # ------------------------------------------------------------------ exact linear head
    def linear_head(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(weight (C,D), bias (C,)) when ``h(a) == mean_positions(a) @ weight.T + bias``, else None.

        Checked numerically on random non-negative activations, so a head with a norm layer (ConvNeXt)
        or a class-token read-out (ViT) is correctly reported as non-linear.
        """
        if hasattr(self, "_linear_head"):
            return self._linear_head
        result = None
        classifier = self.model.get_classifier() if hasattr(self.model, "get_classifier") else None
        if self._module is None and self.layout == "spatial" and isinstance(classifier, nn.Linear):
            weight = classifier.weight.detach()
            bias = classifier.bias.detach() if classifier.bias is not None else torch.zeros(weight.shape[0])
            if weight.shape[1] == self.n_channels:
                gen = torch.Generator().manual_seed(0)
                a = torch.rand(2, *self.grid, self.n_channels, generator=gen).to(self.device) * 3
                with torch.no_grad():
                    got = self.h(a.to(weight.dtype))
                    want = a.mean(dim=(1, 2)) @ weight.T + bias.to(a.device)
                if torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())):
                    result = (weight, bias.to(weight.device))
        self._linear_head = result
        return result
