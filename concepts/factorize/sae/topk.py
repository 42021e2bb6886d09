"""TopK and BatchTopK sparse autoencoders.

* :class:`TopKSAE` (Gao et al. 2024): each row keeps its ``k`` largest pre-activations (ReLU'd); L0 = k exactly.
* :class:`BatchTopKSAE` (Bussmann et al. 2024): in training, a batch of B rows keeps its ``k * B`` largest
  pre-activations over the whole batch (rows may use more or fewer than k).  That rule depends on the batch, so
  inference uses a threshold θ instead: ``z = pre * [pre > θ]``.  θ (``threshold_``) is calibrated at the end of
  ``fit`` on a sample of the training rows so that the mean L0 at inference is k (``threshold_calibration=True``,
  the default), or is the running mean of the smallest kept activation of the training batches
  (``running_threshold_``, always recorded; the threshold used when calibration is off).  θ is part of the saved
  state: a reloaded model codes rows exactly as the fitted one (peers lose it on save).
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ._sparse import Codes
from .base import SparseAutoencoder, _Trainer


class TopKSAE(SparseAutoencoder):
    """TopK SAE: ``z = TopK_k(ReLU(W_e (a - b) + b_e))``, ``â = z D + b``, unit-norm atoms.

    Parameters: ``n_components`` (width K), ``k`` (active latents per row; clipped to K), and the training
    parameters of :class:`~concepts.factorize.sae.base.SparseAutoencoder` (lr, batch_size, n_steps / max_epochs,
    warmup_steps, lr_decay, dead_latents = 'auxk' | 'resample' | 'none', aux_k, aux_coef, dead_rows,
    decoder_bias_init, random_state, device ...).
    """

    method = "topk_sae"
    _parameter_constraints = {**SparseAutoencoder._parameter_constraints,
                              "k": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, n_components=1024, *, k=32, lr=1e-3, batch_size=1024, n_steps=None, max_epochs=10,
                 min_steps=2000, warmup_steps=None, lr_decay="linear", decay_start=0.8, dead_latents="auxk", aux_k=None,
                 aux_coef=1 / 32, dead_rows=262144, decoder_bias_init="median", init_rows=16384, eval_rows=65536,
                 chunk_rows=4096, log_every=50, random_state=None, device=None, verbose=False):
        self.k = k
        super().__init__(n_components, lr=lr, batch_size=batch_size, n_steps=n_steps, max_epochs=max_epochs,
                         min_steps=min_steps, warmup_steps=warmup_steps, lr_decay=lr_decay, decay_start=decay_start,
                         dead_latents=dead_latents, aux_k=aux_k, aux_coef=aux_coef, dead_rows=dead_rows,
                         decoder_bias_init=decoder_bias_init, init_rows=init_rows, eval_rows=eval_rows,
                         chunk_rows=chunk_rows, log_every=log_every, random_state=random_state, device=device,
                         verbose=verbose)

    def _k(self) -> int:
        return max(1, min(int(self.k), int(self.n_components)))

    def _select(self, pre, tr):
        return Codes.from_topk(pre, self._k())

    def _infer(self, pre):
        k = self._k()
        vals, idx = torch.topk(pre, k, dim=1, sorted=False)
        return torch.zeros_like(pre).scatter_(1, idx, vals.clamp_min_(0))


class BatchTopKSAE(TopKSAE):
    """BatchTopK SAE: ``k * B`` activations per batch of B rows in training; a learned threshold at inference.

    Extra parameters: ``threshold_calibration`` (calibrate θ on the training sample after fitting: mean L0 = k),
    ``threshold_momentum`` (the running threshold is an exponential mean of each training batch's smallest kept
    activation; 0.99 averages over ~100 steps).  Fitted: ``threshold_`` and ``running_threshold_`` (data units).
    """

    method = "batchtopk_sae"
    _state = SparseAutoencoder._state + ("threshold_", "running_threshold_")
    _parameter_constraints = {**TopKSAE._parameter_constraints,
                              "threshold_calibration": ["boolean"],
                              "threshold_momentum": [Interval(Real, 0, 1, closed="left")]}

    def __init__(self, n_components=1024, *, k=32, threshold_calibration=True, threshold_momentum=0.99, lr=1e-3,
                 batch_size=1024, n_steps=None, max_epochs=10, min_steps=2000, warmup_steps=None, lr_decay="linear",
                 decay_start=0.8,
                 dead_latents="auxk", aux_k=None, aux_coef=1 / 32, dead_rows=262144, decoder_bias_init="median",
                 init_rows=16384, eval_rows=65536, chunk_rows=4096, log_every=50, random_state=None, device=None,
                 verbose=False):
        self.threshold_calibration = threshold_calibration
        self.threshold_momentum = threshold_momentum
        super().__init__(n_components, k=k, lr=lr, batch_size=batch_size, n_steps=n_steps, max_epochs=max_epochs,
                         min_steps=min_steps, warmup_steps=warmup_steps, lr_decay=lr_decay, decay_start=decay_start,
                         dead_latents=dead_latents, aux_k=aux_k, aux_coef=aux_coef, dead_rows=dead_rows,
                         decoder_bias_init=decoder_bias_init, init_rows=init_rows, eval_rows=eval_rows,
                         chunk_rows=chunk_rows, log_every=log_every, random_state=random_state, device=device,
                         verbose=verbose)

    def _select(self, pre, tr: _Trainer):
        B, K = pre.shape
        n_keep = min(self._k() * B, B * K)
        flat = pre.reshape(-1)
        flat_idx = None
        stride = 17  # prime: the strided sample visits every latent
        if flat.numel() >= 64 * stride and n_keep * 4 < flat.numel():
            # the threshold estimated on a strided sample, lowered so that ~1.5 k*B entries pass it; the exact top
            # k*B among those (exact whenever at least k*B pass, else the full selection below)
            sub = flat[::stride]
            want = min(sub.numel(), max(1, int(1.5 * n_keep / stride) + 1))
            cut = torch.topk(sub, want, sorted=False).values.min()
            cand = (flat >= cut).nonzero().flatten()
            if cand.numel() >= n_keep:
                vals, pos = torch.topk(flat[cand], n_keep, sorted=False)
                flat_idx = cand[pos]
        if flat_idx is None:
            vals, flat_idx = torch.topk(flat, n_keep, sorted=False)
        keep = vals > 0
        flat_idx, vals = flat_idx[keep], vals[keep]
        if vals.numel():
            smallest = float(vals.min())
            run = tr.extra.get("threshold")
            mom = float(self.threshold_momentum)
            tr.extra["threshold"] = smallest if run is None else mom * run + (1 - mom) * smallest
        flat_idx, _ = torch.sort(flat_idx)  # row-major
        return Codes(flat_idx // K, flat_idx % K, flat[flat_idx], B, K)

    def _export(self, P, c):
        out = super()._export(P, c)
        run = getattr(self, "_trainer_", None)
        theta = None if run is None else run.extra.get("threshold")
        out["running_threshold_"] = np.float32((theta if theta is not None else 0.0) / c)
        out["threshold_"] = out["running_threshold_"]  # until calibrated (_evaluate)
        return out

    def _import_extra(self, tr: _Trainer) -> None:
        tr.extra["threshold"] = float(getattr(self, "running_threshold_", self.threshold_)) * tr.scale

    def _finish(self, tr):
        self._trainer_ = tr
        super()._finish(tr)
        self.threshold_ = float(self.threshold_)
        self.running_threshold_ = float(self.running_threshold_)

    def _evaluate(self, X):
        if self.threshold_calibration and getattr(self, "_trainer_", None) is not None:
            self.threshold_ = self._calibrated_threshold(X)
        super()._evaluate(X)

    @torch.no_grad()
    def _calibrated_threshold(self, X) -> float:
        """The threshold at which rows ``X`` have k active latents on average: the (k n)-th largest ReLU'd
        pre-activation (exact: each row's top 4k are the candidates, checked as in training)."""
        k, K = self._k(), self.components_.shape[0]
        m = min(K, 4 * k)
        parts, row_floor = [], []
        for s in range(0, X.shape[0], int(self.chunk_rows)):
            pre = self._pre(X[s:s + int(self.chunk_rows)]).clamp_min_(0)
            vals = torch.topk(pre, m, dim=1, sorted=False).values
            parts.append(vals.reshape(-1))
            row_floor.append(vals.min(1).values)
        cand = torch.cat(parts)
        n_keep = min(cand.numel(), k * X.shape[0])
        theta = float(torch.topk(cand, n_keep, sorted=False).values.min())
        if m < K and bool((torch.cat(row_floor) >= theta).any()):  # a row may have more above θ: count exactly
            lo = theta
            hi = max(float(self._pre(X[s:s + int(self.chunk_rows)]).max())
                     for s in range(0, X.shape[0], int(self.chunk_rows)))
            for _ in range(40):  # bisection on the exact count
                mid = 0.5 * (lo + hi)
                count = sum(int((self._pre(X[s:s + int(self.chunk_rows)]) > mid).sum())
                            for s in range(0, X.shape[0], int(self.chunk_rows)))
                lo, hi = (mid, hi) if count > n_keep else (lo, mid)
            theta = hi
        # inference keeps pre > θ: step just below the k n-th value so that it is kept
        return float(np.nextafter(np.float32(theta), np.float32(0))) if theta > 0 else 0.0

    def _infer(self, pre):
        theta = float(self.threshold_)
        return torch.where(pre > theta, pre, torch.zeros((), dtype=pre.dtype, device=pre.device)).clamp_min_(0)
