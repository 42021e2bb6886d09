"""Sparse dictionary learning: ``min 0.5 ||A - U W||^2 + lambda ||U||_1`` with atoms ``||W_k||_2 <= 1``.

Alternates (Mairal et al. 2009/2010, batch form) sparse coding of U by FISTA on ``A W^T`` and ``W W^T``
(O(r^2 n) per step once the products are made) with a block-coordinate update of each atom followed by
projection on the unit ball.  Unused atoms are re-seeded on the worst-reconstructed row.  Optional
non-negativity of the codes (``positive_code``) and of the atoms (``positive_dict``).

``alpha`` is *relative*: ``lambda = alpha * mean_i ||a_i||_2`` (stored as ``lambda_``), so the same
setting means the same sparsity on activations of any scale — an atom must explain about ``alpha`` of a
row's norm to be used.  ``transform`` solves the lasso with W fixed by FISTA from zero.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval

from .base import ConceptExtractor, chunks
from .kmeans import kmeans_pp


def fista(Ut, P, G, lam, positive, max_iter, tol):
    """Lasso codes ``argmin 0.5 <U, G U> - <U, P> + lam |U|_1`` (Ut r x n, in place), FISTA with restart."""
    L = float(torch.linalg.eigvalsh(G.double()).max().clamp_min(1e-30))
    step = 1.0 / L
    Y = Ut.clone()
    t = 1.0
    it = 0
    for it in range(1, max_iter + 1):
        Z = Y - step * (G @ Y - P)
        if positive:
            new = (Z - lam * step).clamp_min_(0)
        else:
            new = torch.sign(Z) * (Z.abs() - lam * step).clamp_min_(0)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        diff = new - Ut
        change = float(torch.linalg.vector_norm(diff))
        Y = new + ((t - 1) / t_new) * diff
        Ut.copy_(new)
        t = t_new
        if change <= tol * max(float(torch.linalg.vector_norm(Ut)), 1e-30):
            break
    return it


class DictionaryLearning(ConceptExtractor):
    """Sparse dictionary concepts. Parameters: n_components, alpha (relative l1 weight), positive_code,
    positive_dict, max_iter, tol, window, code_iter (FISTA steps per outer iteration),
    transform_max_iter, transform_tol, chunk_rows, random_state, device.

    Fitted: ``components_`` (r x D, unit-norm or smaller atoms), ``lambda_`` (the absolute l1 weight).
    """

    method = "dictionary"
    _state = ("lambda_",)
    _parameter_constraints = {
        **ConceptExtractor._parameter_constraints,
        "alpha": [Interval(Real, 0, None, closed="left")],
        "positive_code": ["boolean"],
        "positive_dict": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "window": [Interval(Integral, 1, None, closed="left")],
        "code_iter": [Interval(Integral, 1, None, closed="left")],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left")],
        "transform_tol": [Interval(Real, 0, None, closed="left")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components=10, *, alpha=0.1, positive_code=False, positive_dict=False, max_iter=200,
                 tol=1e-6, window=5, code_iter=30, transform_max_iter=500, transform_tol=1e-5,
                 chunk_rows=65536, random_state=None, device=None):
        self.n_components = n_components
        self.alpha = alpha
        self.positive_code = positive_code
        self.positive_dict = positive_dict
        self.max_iter = max_iter
        self.tol = tol
        self.window = window
        self.code_iter = code_iter
        self.transform_max_iter = transform_max_iter
        self.transform_tol = transform_tol
        self.chunk_rows = chunk_rows
        self.random_state = random_state
        self.device = device

    @property
    def signed(self):
        # a sign flip of a concept is a symmetry only when neither codes nor atoms are constrained
        return not (self.positive_code or self.positive_dict)

    def _max_rank(self, n, d):
        return n  # overcomplete dictionaries (r > D) are allowed

    def _update_atoms(self, W, Ut, X, resid_rows):
        Q = Ut @ X
        H = Ut @ Ut.T
        diag = torch.diagonal(H).tolist()
        thresh = 1e-12 * max(max(diag), 1e-30)
        worst = iter(torch.argsort(resid_rows, descending=True).tolist())
        for k in range(W.shape[0]):
            if diag[k] <= thresh:  # unused atom: re-seed on a badly reconstructed row
                w = X[next(worst)].clone()
            else:
                w = W[k] + (Q[k] - H[k] @ W) / diag[k]
            if self.positive_dict:
                w.clamp_min_(0)
            norm = float(torch.linalg.vector_norm(w))
            W[k] = w / max(norm, 1.0) if diag[k] > thresh else w / max(norm, 1e-30)
        return Q, H

    def _fit(self, X, gen):
        n, d = X.shape
        r = int(self.n_components)
        self.lambda_ = float(self.alpha) * float(torch.linalg.vector_norm(X, dim=1).mean())
        lam = self.lambda_
        W = kmeans_pp(X, r, gen)
        W = W / torch.linalg.vector_norm(W, dim=1, keepdim=True).clamp_min(1e-30)
        Ut = torch.zeros((r, n), dtype=X.dtype, device=X.device)
        rowsq = X.square().sum(1)
        normA2 = float(torch.linalg.vector_norm(X, dtype=torch.float64)) ** 2
        history = [math.inf]
        converged = False
        it = 0
        for it in range(1, int(self.max_iter) + 1):
            P = W @ X.T
            G = W @ W.T
            fista(Ut, P, G, lam, self.positive_code, int(self.code_iter), 1e-4)
            resid = rowsq - 2 * (Ut * P).sum(0) + (Ut * (G @ Ut)).sum(0)
            obj = 0.5 * float(resid.double().sum()) + lam * float(Ut.abs().sum())
            history.append(obj / max(normA2, 1e-30))
            window = min(int(self.window), it)
            if history[-1 - window] - history[-1] < self.tol * window * history[-1]:
                converged = True
                break
            self._update_atoms(W, Ut, X, resid)
        P = W @ X.T
        G = W @ W.T
        fista(Ut, P, G, lam, self.positive_code, int(self.transform_max_iter), float(self.transform_tol))
        return W, Ut.T, {"n_iter": it, "converged": converged}

    def _transform(self, X):
        W = self._W_of(X)
        G = W @ W.T
        out = torch.empty((X.shape[0], W.shape[0]), dtype=X.dtype, device=X.device)
        for sl in chunks(X.shape[0], self.chunk_rows):
            P = W @ X[sl].T
            Ut = torch.zeros_like(P)
            fista(Ut, P, G, float(self.lambda_), self.positive_code, int(self.transform_max_iter),
                  float(self.transform_tol))
            out[sl] = Ut.T
        return out
