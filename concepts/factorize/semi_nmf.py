"""Semi-NMF (Ding, Li & Jordan 2010): non-negative coefficients, signed concepts — for signed activations.

``min 0.5 ||A - U W||^2`` over ``U >= 0`` (n x r) and unconstrained W (r x D), e.g. for ViT tokens or
any layer that is not ReLU'd.  Alternates the exact least-squares bank ``W = (U^T U)^-1 U^T A`` with
exact coordinate descent passes on U (non-negative, as in NMF's HALS) on ``A W^T`` and ``W W^T``.
Initialised, as in the paper, from k-means: U = cluster indicator + 0.2.  Concepts that lose every
coefficient are re-seeded on the worst-reconstructed row.  ``transform`` is the same non-negative least
squares as NMF's.  Stopping as NMF (relative error improvement over a window of iterations).
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval

from . import _solvers as S
from .base import ConceptExtractor
from .kmeans import kmeans_pp, lloyd


class SemiNMF(ConceptExtractor):
    """Semi-NMF concepts. Parameters: n_components, max_iter, tol, window, max_inner, inner_tol,
    transform_max_iter, transform_tol, chunk_rows, random_state, device."""

    signed = False  # U >= 0 fixes the sign of every concept; no flipping
    method = "semi_nmf"
    _parameter_constraints = {
        **ConceptExtractor._parameter_constraints,
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "window": [Interval(Integral, 1, None, closed="left")],
        "max_inner": [Interval(Integral, 1, None, closed="left")],
        "inner_tol": [Interval(Real, 0, None, closed="left")],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left")],
        "transform_tol": [Interval(Real, 0, None, closed="left")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components=10, *, max_iter=200, tol=1e-5, window=10, max_inner=10, inner_tol=0.1,
                 transform_max_iter=200, transform_tol=1e-5, chunk_rows=65536, random_state=None, device=None):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.window = window
        self.max_inner = max_inner
        self.inner_tol = inner_tol
        self.transform_max_iter = transform_max_iter
        self.transform_tol = transform_tol
        self.chunk_rows = chunk_rows
        self.random_state = random_state
        self.device = device

    @staticmethod
    def _solve_bank(Ut, X):
        Q = Ut @ X
        H = Ut @ Ut.T
        r = H.shape[0]
        ridge = 1e-6 * float(torch.diagonal(H).mean().clamp_min(1e-30))
        sol = torch.linalg.solve((H + ridge * torch.eye(r, dtype=H.dtype, device=H.device)).double(), Q.double())
        return sol.to(X.dtype), Q, H

    def _fit(self, X, gen):
        n, d = X.shape
        r = int(self.n_components)
        normA2 = float(torch.linalg.vector_norm(X, dtype=torch.float64)) ** 2
        C0 = kmeans_pp(X, r, gen)
        _, labels, _, _, _ = lloyd(X, C0, 20, 1e-4)
        Ut = torch.full((r, n), 0.2, dtype=X.dtype, device=X.device)
        Ut[labels, torch.arange(n, device=X.device)] += 1.0
        rowsq = X.square().sum(1)
        history = [math.inf]
        converged = False
        last_reseed = 0
        it = 0
        for it in range(1, int(self.max_iter) + 1):
            W, _, _ = self._solve_bank(Ut, X)
            P = W @ X.T
            G = W @ W.T
            reseeded = False
            dead = (Ut.amax(dim=1) <= 0).nonzero().flatten().tolist()
            if dead and it <= 0.8 * self.max_iter:
                resid = rowsq - 2 * (Ut * P).sum(0) + (Ut * (G @ Ut)).sum(0)
                worst = torch.topk(resid, k=min(len(dead), n)).indices
                for k, i in zip(dead, worst.tolist()):
                    Ut[k, i] = 1.0
                W, _, _ = self._solve_bank(Ut, X)
                P = W @ X.T
                G = W @ W.T
                reseeded = True
                last_reseed = it
            S.inner_iterations(S.hals_rows, Ut, P, G, int(self.max_inner), float(self.inner_tol))
            err2 = normA2 - 2 * float((Ut.double() * P.double()).sum()) + float(
                (Ut.double() * (G.double() @ Ut.double())).sum())
            rel = math.sqrt(max(err2, 0.0) / normA2) if normA2 > 0 else 0.0
            history.append(rel)
            window = min(int(self.window), it - last_reseed)
            if not reseeded and window >= 1 and history[-1 - window] - rel < self.tol * window * rel:
                converged = True
                break
        W, _, _ = self._solve_bank(Ut, X)
        # final coefficients: exactly what transform gives (the NNLS of Semi-NMF can be ill-conditioned,
        # so a warm start and a cold start may stop at visibly different points)
        return W, self._nnls(X, W), {"n_iter": it, "converged": converged}

    def _transform(self, X):
        return self._nnls(X, self._W_of(X))

    def _nnls(self, X, W):
        return S.nnls_transform(X, W, self.chunk_rows, self.transform_max_iter, self.transform_tol)
