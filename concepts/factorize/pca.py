"""Principal component analysis: concepts are the top-r principal directions.

``A ~ mean + U W`` with W (r x D) orthonormal rows, the eigenvectors of the covariance with the r
largest eigenvalues, and ``U = (A - mean) W^T``.  The covariance (D x D) is accumulated in float64 and
diagonalised exactly (``torch.linalg.eigh``), so the result does not depend on the seed; concepts stay
in order of explained variance and each atom's largest entry is positive.
"""
from __future__ import annotations

from numbers import Integral

import torch
from sklearn.utils._param_validation import Interval

from .base import ConceptExtractor, chunks


class PCA(ConceptExtractor):
    """PCA concepts. Parameters: n_components (r), chunk_rows, random_state (unused: exact), device.

    Fitted: ``components_`` (r x D), ``mean_`` (D,), ``explained_variance_`` (r,),
    ``explained_variance_ratio_`` (r,).
    """

    signed = True
    method = "pca"
    _min_rows = 2  # centred: n rows span at most n - 1 directions
    _parameter_constraints = {
        **ConceptExtractor._parameter_constraints,
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
    }
    _per_concept = ("explained_variance_", "explained_variance_ratio_")
    _state = ("mean_", "explained_variance_", "explained_variance_ratio_")

    def __init__(self, n_components=10, *, chunk_rows=65536, random_state=None, device=None):
        self.n_components = n_components
        self.chunk_rows = chunk_rows
        self.random_state = random_state
        self.device = device

    def _max_rank(self, n, d):
        return min(n - 1, d)

    def _fit(self, X, gen):
        n, d = X.shape
        r = int(self.n_components)
        mean = X.double().mean(0)
        cov = torch.zeros((d, d), dtype=torch.float64, device=X.device)
        for sl in chunks(n, self.chunk_rows):
            Z = X[sl].double() - mean
            cov += Z.T @ Z
        cov /= max(n - 1, 1)
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)[:r]
        W = evecs[:, order].T.contiguous().float()
        variance = evals[order].clamp_min(0)
        self.mean_ = mean.float().cpu().numpy()
        self.explained_variance_ = variance.cpu().numpy()
        total = float(evals.clamp_min(0).sum())
        self.explained_variance_ratio_ = (variance / total).cpu().numpy() if total > 0 else variance.cpu().numpy() * 0
        U = (X - mean.float()) @ W.T
        return W, U, {"n_iter": 1, "converged": True}

    def _order_key(self, U, W):
        # keep the order of explained variance (the energy of each column of U)
        return U.double().square().sum(0)

    def _mean(self, like):
        return torch.as_tensor(self.mean_, dtype=like.dtype, device=like.device)

    def _transform(self, X):
        return (X - self._mean(X)) @ self._W_of(X).T

    def _inverse(self, U):
        return U @ self._W_of(U) + self._mean(U)
