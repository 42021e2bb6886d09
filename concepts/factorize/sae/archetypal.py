"""Relaxed archetypal sparse autoencoder (RA-SAE, Fel et al. 2025): atoms tied to the data's convex hull.

The dictionary is ``D = W C + Λ``: ``C`` (n_c x D) are fixed candidate points — k-means centroids of a sample of
the rows, so inside the data's convex hull —, ``W`` (K x n_c) is row-stochastic (non-negative rows that sum to
one: each atom is a convex combination of candidates), and ``Λ`` (K x D) a relaxation with ``||Λ_k|| <= δ``.
Every atom therefore lies within δ of ``conv(C)``, which is what makes the dictionary stable across seeds and
its atoms look like data.  After each Adam step ``W`` is projected back (clipped at 0 and renormalised per row) and
each ``Λ_k`` onto the δ-ball.  Codes are TopK's.  The atoms are not unit-norm (they are data-like points); the
decoder has no bias (the hull is the data's own, not the centred data's).

``delta`` is relative to the RMS norm of the candidates; ``delta_`` is the absolute bound (data units).  Fitted:
``candidates_`` (C), ``mixing_`` (W), ``relaxation_`` (Λ), so that ``components_ = mixing_ @ candidates_ +
relaxation_``.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ..kmeans import kmeans_pp, lloyd
from .base import SparseAutoencoder
from .topk import TopKSAE

_EPS = 1e-12


class ArchetypalSAE(TopKSAE):
    """RA-SAE with TopK codes.

    Parameters: ``n_candidates`` (k-means centroids of the initialisation sample; None: min(1024, 4K, rows)),
    ``delta`` (relaxation radius, relative to the RMS norm of the candidates), ``kmeans_iter``; others as
    :class:`~concepts.factorize.sae.topk.TopKSAE`.
    """

    method = "archetypal_sae"
    _unit_atoms = False
    _frozen = ("b", "C")
    _state = SparseAutoencoder._state + ("candidates_", "mixing_", "relaxation_", "delta_")
    _parameter_constraints = {**{k: v for k, v in TopKSAE._parameter_constraints.items()
                                 if k != "decoder_bias_init"},
                              "n_candidates": [Interval(Integral, 1, None, closed="left"), None],
                              "delta": [Interval(Real, 0, None, closed="left")],
                              "kmeans_iter": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, n_components=1024, *, k=32, n_candidates=None, delta=0.1, kmeans_iter=20, lr=1e-3,
                 batch_size=1024, n_steps=None, max_epochs=10, min_steps=2000, warmup_steps=None, lr_decay="linear",
                 decay_start=0.8, dead_latents="auxk", aux_k=None, aux_coef=1 / 32, dead_rows=262144, init_rows=16384,
                 eval_rows=65536, chunk_rows=4096, log_every=50, random_state=None, device=None, verbose=False):
        self.n_components = n_components
        self.k = k
        self.n_candidates = n_candidates
        self.delta = delta
        self.kmeans_iter = kmeans_iter
        self.lr = lr
        self.batch_size = batch_size
        self.n_steps = n_steps
        self.max_epochs = max_epochs
        self.min_steps = min_steps
        self.warmup_steps = warmup_steps
        self.lr_decay = lr_decay
        self.decay_start = decay_start
        self.dead_latents = dead_latents
        self.aux_k = aux_k
        self.aux_coef = aux_coef
        self.dead_rows = dead_rows
        self.init_rows = init_rows
        self.eval_rows = eval_rows
        self.chunk_rows = chunk_rows
        self.log_every = log_every
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _bias_init(self, sample):
        return torch.zeros(sample.shape[1], dtype=torch.float32, device=sample.device)

    def _init_params(self, sample, gen, device):
        K, d = int(self.n_components), sample.shape[1]
        c = self._scale_for(sample, torch.zeros(d, device=sample.device))
        n_c = int(self.n_candidates) if self.n_candidates is not None else min(1024, 4 * K)
        n_c = max(1, min(n_c, sample.shape[0]))
        C0 = kmeans_pp(sample, n_c, gen)
        C, _, _, _, _ = lloyd(sample, C0, int(self.kmeans_iter), 1e-4)
        C = (c * C).to(device)
        onehot = torch.zeros((K, n_c), device=device)
        onehot[torch.arange(K), torch.arange(K) % n_c] = 1.0
        noise = torch.rand((K, n_c), generator=gen).to(device)
        W = 0.9 * onehot + 0.1 * noise / noise.sum(1, keepdim=True)
        D0 = W @ C
        # encoder rows along the atoms seen from the candidates' mean m (so that the pre-activations tell atoms
        # apart), the centring folded into the bias: pre_k = u_k (x - m), pre_k(D0_k) = 1
        m = C.mean(0)
        U = D0 - m
        W_e = U / U.square().sum(1, keepdim=True).clamp_min(_EPS)
        b_e = -(W_e @ m)
        rms = float(C.square().sum(1).mean().sqrt())
        P = {"W_e": W_e, "b_e": b_e, "b": torch.zeros(d, device=device), "C": C,
             "Wmix": W, "Lam": torch.zeros((K, d), device=device)}
        self._delta_internal = float(self.delta) * rms
        return P, c

    def _dictionary(self, P):
        return P["Wmix"] @ P["C"] + P["Lam"]

    def _project(self, P):
        W = P["Wmix"]
        W.clamp_min_(0)
        sums = W.sum(1, keepdim=True)
        empty = sums[:, 0] <= _EPS
        if bool(empty.any()):
            W[empty] = 1.0 / W.shape[1]
            sums = W.sum(1, keepdim=True)
        W.div_(sums)
        L = P["Lam"]
        delta = self._delta_of(P)
        norms = torch.linalg.vector_norm(L, dim=1, keepdim=True)
        L.mul_(torch.clamp(delta / norms.clamp_min(_EPS), max=1.0))

    def _delta_of(self, P) -> float:
        value = getattr(self, "_delta_internal", None)
        if value is None:
            value = float(self.delta_) * float(self.scale_)
        return value

    def _export(self, P, c):
        D = self._dictionary(P).detach()
        out = {
            "components_": D / c,
            "encoder_weight_": P["W_e"].detach() * c,
            "encoder_bias_": P["b_e"].detach(),
            "decoder_bias_": P["b"].detach() / c,
            "candidates_": P["C"] / c,
            "mixing_": P["Wmix"].detach(),
            "relaxation_": P["Lam"].detach() / c,
        }
        out = {k: v.to("cpu", torch.float32).numpy().copy() for k, v in out.items()}
        out["delta_"] = np.float32(self._delta_of(P) / c)
        return out

    def _finish(self, tr):
        super()._finish(tr)
        self.delta_ = float(self.delta_)

    def _import(self, device):
        c = float(self.scale_)
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32)).to(device).clone()  # noqa: E731
        self._delta_internal = float(self.delta_) * c
        return {"W_e": t(self.encoder_weight_) / c, "b_e": t(self.encoder_bias_), "b": c * t(self.decoder_bias_),
                "C": c * t(self.candidates_), "Wmix": t(self.mixing_), "Lam": c * t(self.relaxation_)}, c
