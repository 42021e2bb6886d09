"""The class-token head of a transformer evaluated on concept-masked activations without building them.

The importance estimators evaluate ``h`` on ``X(m) = (U ⊙ m) W + R`` for hundreds of masks ``m`` per image. For a
transformer cut before its last block whose head reads the class token (timm's ``global_pool == "token"``, the
default cut), ``h`` is: the last block for the class token, ``norm``, the classifier. In that block the masked
positions enter only through their layer norm, keys and values, and each of those is an affine function of the
concept coefficients ``z_p = u_p ⊙ m`` once the position's mean and variance are known:

* ``mean(x_p) = z_p · ω + ν_p`` and ``mean(x_p²) = (z_p G z_pᵀ + 2 z_p · η_p + |r_p|²) / D``, with
  ``ω = W 1 / D``, ``G = W Wᵀ``, ``η_p = W r_p``, ``ν_p = mean(r_p)``;
* ``[k, v]_p = s_p (z_p M + ρ_p - μ_p c) + e``, with ``s_p = 1 / sqrt(var_p + eps)``, ``M = (W ⊙ γ) W_kvᵀ``,
  ``ρ_p = (r_p ⊙ γ) W_kvᵀ``, ``c = γ W_kvᵀ``, ``e = β W_kvᵀ + b_kv`` (γ, β: the norm's affine parameters);
* the class token's query ``q`` does not depend on the mask, so its attention logits on the positions are
  ``s_p (z_p · a_h + b_ph - μ_p c_h) + d_h`` per head ``h``, with ``a, b, c, d`` the products of ``q`` with
  ``M, ρ, c, e``; and its attention output is ``(Σ_p α_ph s_p z_p) M_v + Σ_p α_ph s_p ρ_v,p - ... ``.

Per mask this costs O(N (r² + r H + D)) instead of a block over N tokens (O(N D²)): the parts that the mask does
not change (the residual's projections, the prefix tokens, the query) are computed once per image.
:meth:`ModelSplit.factored_head` builds one when the model allows it, and the scorer checks it against the plain
path before using it.
"""
from __future__ import annotations

import torch
from torch import nn


def factored_block_supported(block: nn.Module) -> bool:
    """Whether ``block`` is a timm pre-norm block this module can evaluate in factored form."""
    attn = getattr(block, "attn", None)
    if attn is None or not isinstance(getattr(block, "norm1", None), nn.LayerNorm):
        return False
    if not all(hasattr(attn, n) for n in ("qkv", "num_heads", "head_dim", "proj")):
        return False
    identity = all(isinstance(getattr(attn, n, nn.Identity()), nn.Identity) for n in ("q_norm", "k_norm"))
    affine = block.norm1.elementwise_affine and tuple(block.norm1.normalized_shape) == (attn.qkv.in_features,)
    return identity and affine and isinstance(attn.qkv, nn.Linear)


class FactoredClassTokenHead:
    """Class-token logits of ``h([prefix; (U ⊙ m) W + R])`` for batches of ``(image, mask)`` pairs.

    ``block``: the last transformer block; ``finish(x_cls (B, 1, D)) -> logits``: what follows it (``norm`` and
    ``forward_head``). ``coefficients`` (n, N, r), ``components`` (r, D), ``residual`` (n, N, D) or None,
    ``prefix`` (n, P, D) with the class token first.
    """

    def __init__(self, block: nn.Module, finish, coefficients: torch.Tensor, components: torch.Tensor,
                 residual: torch.Tensor | None, prefix: torch.Tensor):
        attn = block.attn
        self.block, self.finish = block, finish
        dtype = components.dtype
        self.U = coefficients
        W = components
        n, N, r = coefficients.shape
        D = W.shape[1]
        self.heads, self.head_dim = int(attn.num_heads), int(attn.head_dim)
        width = self.heads * self.head_dim
        self.width = width
        norm = block.norm1
        gamma = norm.weight.detach().to(dtype)
        beta = norm.bias.detach().to(dtype) if norm.bias is not None else torch.zeros_like(gamma)
        self.eps = float(norm.eps)
        weight = attn.qkv.weight.detach().to(dtype)
        bias = attn.qkv.bias.detach().to(dtype) if attn.qkv.bias is not None else torch.zeros(3 * width, dtype=dtype,
                                                                                             device=W.device)
        w_q, w_kv = weight[:width], weight[width:]
        b_q, b_kv = bias[:width], bias[width:]
        self.D = D
        with torch.no_grad():
            R = residual if residual is not None else torch.zeros(n, N, D, dtype=dtype, device=W.device)
            self.omega = W.mean(dim=1)  # (r,)
            # the variance is a difference of moments: the per-image terms are summed in float64
            self.G32 = W @ W.T  # (r, r)
            self.eta32 = R @ W.T  # (n, N, r)
            self.nu = R.double().mean(dim=2)  # (n, N)
            self.rsq = (R.double() ** 2).sum(dim=2)  # (n, N)
            M = (W * gamma) @ w_kv.T  # (r, 2A)
            rho = (R * gamma) @ w_kv.T  # (n, N, 2A)
            c = gamma @ w_kv.T  # (2A,)
            e = beta @ w_kv.T + b_kv  # (2A,)
            # the prefix tokens (class token first) through the norm and the projections, once per image
            y_pre = norm(prefix.to(dtype))  # (n, P, D)
            q = y_pre[:, 0] @ w_q.T + b_q  # (n, A)
            kv_pre = y_pre @ w_kv.T + b_kv  # (n, P, 2A)
            H, hd = self.heads, self.head_dim
            scale = hd ** -0.5
            qh = q.reshape(n, H, hd) * scale  # (n, H, hd)
            Mk, Mv = M[:, :width].reshape(r, H, hd), M[:, width:].reshape(r, H, hd)
            rk, rv = rho[..., :width].reshape(n, N, H, hd), rho[..., width:].reshape(n, N, H, hd)
            ck, cv = c[:width].reshape(H, hd), c[width:].reshape(H, hd)
            ek, ev = e[:width].reshape(H, hd), e[width:].reshape(H, hd)
            self.a = torch.einsum("rhd,nhd->nrh", Mk, qh)  # (n, r, H)
            self.b = torch.einsum("nphd,nhd->nph", rk, qh)  # (n, N, H)
            self.c = torch.einsum("hd,nhd->nh", ck, qh)  # (n, H)
            self.d = torch.einsum("hd,nhd->nh", ek, qh)  # (n, H)
            kp = kv_pre[..., :width].reshape(n, -1, H, hd)
            self.pre_logits = torch.einsum("nphd,nhd->nph", kp, qh)  # (n, P, H)
            self.pre_v = kv_pre[..., width:].reshape(n, -1, H, hd)  # (n, P, H, hd)
            self.Mv, self.rv, self.cv, self.ev = Mv, rv, cv, ev
            self.x_cls = prefix[:, :1].to(dtype)  # (n, 1, D)
            self.y_cls = y_pre[:, :1]  # (n, 1, D), for the gate of gated attention

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) for image indices ``images`` (B,) and masks (B, r)."""
        values, counts = torch.unique_consecutive(images, return_counts=True)
        parts, start = [], 0
        for value, count in zip(values.tolist(), counts.tolist()):  # runs of one image: no per-row gathers
            parts.append(self._class_token(value, masks[start:start + count]))
            start += count
        x0 = torch.cat(parts) if len(parts) > 1 else parts[0]
        block = self.block
        x0 = x0 + block.drop_path2(block.ls2(block.mlp(block.norm2(x0))))
        return self.finish(x0)

    def _class_token(self, i: int, masks: torch.Tensor) -> torch.Tensor:
        """The class token after the attention half of the block, (B, 1, D), for masks (B, r) on image ``i``."""
        attn = self.block.attn
        z = self.U[i][None] * masks[:, None, :]  # (B, N, r)
        mean = (z @ self.omega).double() + self.nu[i]  # (B, N)
        quad = ((z @ self.G32) * z).sum(dim=2).double()
        second = (quad + 2 * (z * self.eta32[i]).sum(dim=2).double() + self.rsq[i]) / self.D
        s = torch.rsqrt((second - mean ** 2).clamp_min(0) + self.eps).to(z.dtype)  # (B, N)
        mean = mean.to(z.dtype)
        # attention logits of the class token on the positions, per head
        logits = s[..., None] * (z @ self.a[i] + self.b[i] - mean[..., None] * self.c[i]) + self.d[i]  # (B, N, H)
        pre = self.pre_logits[i][None].expand(len(masks), -1, -1)
        alpha = torch.softmax(torch.cat([pre, logits], dim=1), dim=1)
        P = pre.shape[1]
        a_pre, a_pos = alpha[:, :P], alpha[:, P:]  # (B, P, H), (B, N, H)
        weighted = a_pos * s[..., None]  # α s: (B, N, H)
        beta = weighted.transpose(1, 2) @ z  # (B, H, r)
        out = torch.einsum("bhr,rhd->bhd", beta, self.Mv)
        out = out + torch.einsum("bnh,nhd->bhd", weighted, self.rv[i])
        out = out - (weighted * mean[..., None]).sum(dim=1)[..., None] * self.cv
        out = out + a_pos.sum(dim=1)[..., None] * self.ev
        out = out + torch.einsum("bph,phd->bhd", a_pre, self.pre_v[i])
        out = out.reshape(len(masks), 1, self.width)
        out = attn.norm(out) if hasattr(attn, "norm") else out
        gate = getattr(attn, "gate", None)
        if gate is not None:
            out = out * gate(self.y_cls[i][None]).sigmoid()
        out = attn.proj(out)
        return self.x_cls[i][None] + self.block.drop_path1(self.block.ls1(out))
