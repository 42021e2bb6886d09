"""Matryoshka sparse autoencoder (Bussmann et al. 2025; Nabeshima 2024): nested prefixes of one dictionary.

The loss is the sum, over prefix sizes ``m_1 < m_2 < ... < m_L = K``, of the error of the reconstruction that
uses only the first ``m_l`` latents: ``sum_l ||a - (z[:, :m_l] D[:m_l] + b)||^2``.  The first latents must then
reconstruct on their own, so they learn general concepts and the later ones refinements, and the first ``m``
atoms of the dictionary are a usable smaller dictionary.  The codes are BatchTopK's (``activation='batchtopk'``,
with its saved inference threshold) or TopK's.  The latent order is meaningful: it is never permuted.
"""
from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import StrOptions

from ...errors import ConceptsError
from ._sparse import Codes, decode
from .topk import BatchTopKSAE, TopKSAE


class MatryoshkaSAE(BatchTopKSAE):
    """Matryoshka SAE.

    Parameters: ``prefixes`` — the nested prefix sizes: None (K/16, K/8, K/4, K/2, K), or a list of ints (latent
    counts) or of fractions of K in (0, 1]; K is always added.  ``activation`` — 'batchtopk' (default) or 'topk'.
    Others as :class:`~concepts.factorize.sae.topk.BatchTopKSAE`.  Fitted: ``prefix_sizes_``.
    """

    method = "matryoshka_sae"
    _reorder = False
    _state = BatchTopKSAE._state + ("prefix_sizes_",)
    _parameter_constraints = {**BatchTopKSAE._parameter_constraints,
                              "prefixes": ["array-like", None],
                              "activation": [StrOptions({"batchtopk", "topk"})]}

    def __init__(self, n_components=1024, *, k=32, prefixes=None, activation="batchtopk", threshold_calibration=True,
                 threshold_momentum=0.99, lr=1e-3, batch_size=1024, n_steps=None, max_epochs=10, min_steps=2000,
                 warmup_steps=None, lr_decay="linear",
                 decay_start=0.8, dead_latents="auxk", aux_k=None, aux_coef=1 / 32, dead_rows=262144,
                 decoder_bias_init="median", init_rows=16384, eval_rows=65536, chunk_rows=4096, log_every=50,
                 random_state=None, device=None, verbose=False):
        self.prefixes = prefixes
        self.activation = activation
        super().__init__(n_components, k=k, threshold_calibration=threshold_calibration,
                         threshold_momentum=threshold_momentum, lr=lr, batch_size=batch_size,
                         n_steps=n_steps, max_epochs=max_epochs, min_steps=min_steps, warmup_steps=warmup_steps,
                         lr_decay=lr_decay,
                         decay_start=decay_start, dead_latents=dead_latents, aux_k=aux_k, aux_coef=aux_coef,
                         dead_rows=dead_rows, decoder_bias_init=decoder_bias_init, init_rows=init_rows,
                         eval_rows=eval_rows, chunk_rows=chunk_rows, log_every=log_every, random_state=random_state,
                         device=device, verbose=verbose)

    def _prefix_sizes(self) -> list[int]:
        K = int(self.n_components)
        spec = self.prefixes
        if spec is None:
            sizes = [K // 16, K // 8, K // 4, K // 2]
        else:
            sizes = []
            for value in spec:
                if isinstance(value, (bool,)) or not isinstance(value, (Integral, Real)):
                    raise ConceptsError(f"Matryoshka prefixes must be numbers, got {value!r}")
                if isinstance(value, Integral):
                    size = int(value)
                elif 0 < float(value) <= 1:
                    size = int(round(float(value) * K))
                else:
                    raise ConceptsError(f"a Matryoshka prefix is a latent count or a fraction of K in (0, 1], "
                                        f"got {value!r}")
                if size < 1 or size > K:
                    raise ConceptsError(f"Matryoshka prefix {value!r} is outside 1..{K} latents")
                sizes.append(size)
        return sorted({s for s in sizes if 1 <= s < K} | {K})

    def _check_family_params(self) -> None:
        self._prefix_sizes()

    def _select(self, pre, tr):
        if self.activation == "topk":
            return Codes.from_topk(pre, self._k())
        return super()._select(pre, tr)

    def _recon_loss(self, x, vals, codes, D, b):
        sizes = self._prefix_sizes()
        x_hat = b.expand_as(x)
        loss = 0.0
        low = 0
        for size in sizes:
            keep = (codes.cols >= low) & (codes.cols < size)
            part = codes.subset(keep)
            if part.nnz:
                x_hat = x_hat + decode(vals[keep], D, part)
            loss = loss + (x - x_hat).square().sum() / x.numel()
            low = size
        return loss, x_hat

    def _export(self, P, c):
        out = super()._export(P, c)
        out["prefix_sizes_"] = torch.tensor(self._prefix_sizes()).numpy()
        return out

    def _finish(self, tr):
        super()._finish(tr)
        self.prefix_sizes_ = self.prefix_sizes_.astype("int64")

    def _infer(self, pre):
        if self.activation == "topk":
            return TopKSAE._infer(self, pre)
        return super()._infer(pre)

    def prefix_transform(self, X, size: int):
        """Codes of rows ``X`` using only the first ``size`` latents (the others set to zero)."""
        Z = self.transform(X)
        Z[:, int(size):] = 0
        return Z
