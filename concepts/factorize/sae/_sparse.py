"""Sparse codes and their gradients: what makes an SAE step cost one dense product instead of five.

A batch's codes are kept as a row-major list of (row, latent, value) entries, :class:`Codes`.  The encoder's
pre-activations are one dense product ``(x - b) W_e^T + b_e`` (B x K), computed without autograd; a family's
selection rule (TopK, BatchTopK, JumpReLU, ReLU) picks the entries; then

* :class:`GatherPre` hands the picked pre-activations to autograd, and its backward builds the encoder's gradients
  from the picked entries only: ``dW_e[j] = sum_{i picks j} g_ij (x_i - b)`` (one embedding-bag over the entries
  sorted by latent), ``db_e = bincount``, ``db = -db_e W_e``, O(nnz D) instead of O(B K D);
* :class:`SparseDecode` computes ``z D`` as an embedding-bag over each row's entries, O(nnz D), with the same
  sorted embedding-bag for ``dD`` and the per-entry weight gradient for ``dz``.

With B = 1024, D = 1280, K = 4096 and k = 32 on two CPU cores, the dense product takes ~130 ms and everything here
~30 ms, against ~5 dense products for the same step with dense autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class Codes:
    """Row-major sparse codes of a batch of ``n_rows`` rows over ``n_latents`` latents.

    ``rows`` must be sorted (non-decreasing); ``cols`` the latent of each entry; ``pre`` its pre-activation
    (no autograd).  The latent-sorted view (``order``, ``col_offsets``) is built on first use and shared by the
    encoder's and decoder's gradients.
    """

    __slots__ = ("rows", "cols", "pre", "n_rows", "n_latents", "_row_offsets", "_order", "_col_offsets")

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, pre: torch.Tensor, n_rows: int, n_latents: int):
        self.rows, self.cols, self.pre = rows, cols, pre
        self.n_rows, self.n_latents = int(n_rows), int(n_latents)
        self._row_offsets = self._order = self._col_offsets = None

    @property
    def nnz(self) -> int:
        return int(self.cols.numel())

    @property
    def row_offsets(self) -> torch.Tensor:
        if self._row_offsets is None:
            counts = torch.bincount(self.rows, minlength=self.n_rows)
            self._row_offsets = torch.cumsum(counts, 0) - counts
        return self._row_offsets

    def _by_latent(self):
        if self._order is None:
            self._order = torch.argsort(self.cols, stable=True)
            counts = torch.bincount(self.cols, minlength=self.n_latents)
            self._col_offsets = torch.cumsum(counts, 0) - counts
        return self._order, self._col_offsets

    def subset(self, keep: torch.Tensor) -> "Codes":
        """The entries where ``keep`` (bool, nnz) is true (still row-major)."""
        return Codes(self.rows[keep], self.cols[keep], self.pre[keep], self.n_rows, self.n_latents)

    def latent_sums(self, values: torch.Tensor, rows_matrix: torch.Tensor) -> torch.Tensor:
        """``out[j] = sum over entries e with cols[e] = j of values[e] * rows_matrix[rows[e]]`` (K x D)."""
        order, offsets = self._by_latent()
        return F.embedding_bag(self.rows[order], rows_matrix, offsets, mode="sum",
                               per_sample_weights=values[order].contiguous())

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((self.n_rows, self.n_latents), dtype=values.dtype, device=values.device)
        out[self.rows, self.cols] = values
        return out

    @classmethod
    def from_topk(cls, pre: torch.Tensor, k: int) -> "Codes":
        """The ``k`` largest entries of each row of ``pre`` (B x K)."""
        B, K = pre.shape
        k = min(int(k), K)
        vals, idx = torch.topk(pre, k, dim=1, sorted=False)
        rows = torch.arange(B, device=pre.device).repeat_interleave(k)
        return cls(rows, idx.reshape(-1), vals.reshape(-1), B, K)

    @classmethod
    def from_mask(cls, pre: torch.Tensor, mask: torch.Tensor) -> "Codes":
        rows, cols = mask.nonzero(as_tuple=True)  # row-major order
        return cls(rows, cols, pre[rows, cols], pre.shape[0], pre.shape[1])


class GatherPre(torch.autograd.Function):
    """Picked pre-activations, differentiable in the encoder parameters (weights W_e, bias b_e, centring b)."""

    @staticmethod
    def forward(ctx, pre_values, xc, W_e, b_e, b, codes: Codes):
        ctx.codes = codes
        ctx.save_for_backward(xc, W_e)
        ctx.b_needs = b is not None and b.requires_grad
        return pre_values.clone()

    @staticmethod
    def backward(ctx, g):
        codes = ctx.codes
        xc, W_e = ctx.saved_tensors
        grad_We = codes.latent_sums(g, xc) if ctx.needs_input_grad[2] else None
        grad_be = None
        if ctx.needs_input_grad[3] or ctx.b_needs:
            grad_be = torch.zeros(codes.n_latents, dtype=g.dtype, device=g.device).index_add_(0, codes.cols, g)
        grad_b = -(grad_be @ W_e) if ctx.b_needs else None
        return None, None, grad_We, grad_be if ctx.needs_input_grad[3] else None, grad_b, None


def _psw_grad(g_out, weight, codes: Codes):
    """d(sum_e v_e weight[cols_e] into row rows_e)/dv_e = <g_out[rows_e], weight[cols_e]>."""
    op = getattr(torch.ops.aten, "_embedding_bag_per_sample_weights_backward", None)
    if op is not None:
        try:
            return op(g_out.contiguous(), weight, codes.cols, codes.row_offsets, codes.rows, 0, -1)
        except (RuntimeError, TypeError):  # signature changed in some torch version: do it by hand
            pass
    out = torch.empty(codes.nnz, dtype=g_out.dtype, device=g_out.device)
    step = 1 << 14
    for s in range(0, codes.nnz, step):
        sl = slice(s, s + step)
        out[sl] = (g_out[codes.rows[sl]] * weight[codes.cols[sl]]).sum(1)
    return out


class SparseDecode(torch.autograd.Function):
    """``out[i] = sum_e v_e D[cols_e]`` over row i's entries (B x Dim), differentiable in v and D."""

    @staticmethod
    def forward(ctx, values, D, codes: Codes):
        ctx.codes = codes
        ctx.save_for_backward(values, D)
        return F.embedding_bag(codes.cols, D, codes.row_offsets, mode="sum", per_sample_weights=values)

    @staticmethod
    def backward(ctx, g_out):
        codes = ctx.codes
        values, D = ctx.saved_tensors
        grad_v = _psw_grad(g_out, D, codes) if ctx.needs_input_grad[0] else None
        grad_D = codes.latent_sums(values.detach(), g_out.contiguous()) if ctx.needs_input_grad[1] else None
        return grad_v, grad_D, None


def decode(values: torch.Tensor, D: torch.Tensor, codes: Codes) -> torch.Tensor:
    if codes.nnz == 0:
        return torch.zeros((codes.n_rows, D.shape[1]), dtype=D.dtype, device=D.device) + 0 * D.sum()
    return SparseDecode.apply(values, D, codes)


def gather_pre(xc, W_e, b_e, b, codes: Codes) -> torch.Tensor:
    return GatherPre.apply(codes.pre, xc, W_e, b_e, b, codes)
