"""Quality measures of a concept dictionary.

All functions take NumPy arrays or torch tensors and return plain Python floats/ints (or arrays):

* :func:`relative_error` — ``||A - U W||_F / ||A||_F``;
* :func:`sparsity_l0` — the fraction of zero (``<= tol``) coefficients;
* :func:`hoyer` — Hoyer's sparsity ``(sqrt(n) - ||x||_1/||x||_2) / (sqrt(n) - 1)`` of each row of U, averaged
  (0: all entries equal, 1: one non-zero);
* :func:`dead_concepts` — concepts whose coefficient column is ~0 on every row (or whose atom is 0);
* :func:`match_atoms` — the Hungarian matching of two banks on |cosine| (or cosine) similarity;
* :class:`StreamingDiagnostics` — the first four accumulated over row chunks (the factorize stage's diagnostics).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def relative_error(A, U, W) -> float:
    """``||A - U W||_F / ||A||_F`` (0 for a perfect reconstruction; 1 for U W = 0)."""
    A, U, W = _np(A), _np(U), _np(W)
    norm = np.linalg.norm(A)
    if norm == 0:
        return 0.0 if np.linalg.norm(U @ W) == 0 else float("inf")
    return float(np.linalg.norm(A - U @ W) / norm)


def sparsity_l0(U, tol: float = 1e-8) -> float:
    """Fraction of coefficients whose absolute value is ``<= tol * max|U|`` (1 = all zero)."""
    U = np.abs(_np(U))
    if U.size == 0:
        return 0.0
    scale = U.max() if U.size else 0.0
    return float(np.mean(U <= tol * max(scale, 1e-300)))


def hoyer(U) -> float:
    """Mean Hoyer sparsity of the rows of U (rows that are all zero are skipped; 1 concept gives 1)."""
    U = np.abs(_np(U))
    n = U.shape[1]
    if n < 2:
        return 1.0
    l1 = U.sum(axis=1)
    l2 = np.sqrt((U ** 2).sum(axis=1))
    keep = l2 > 0
    if not keep.any():
        return 0.0
    values = (np.sqrt(n) - l1[keep] / l2[keep]) / (np.sqrt(n) - 1)
    return float(np.mean(values))


def dead_concepts(U, W=None, tol: float = 1e-8) -> np.ndarray:
    """Indices of dead concepts: coefficient column with max |u| <= ``tol * max|U|`` or an atom of norm ~0."""
    U = np.abs(_np(U))
    scale = max(U.max() if U.size else 0.0, 1e-300)
    dead = U.max(axis=0) <= tol * scale if U.shape[0] else np.ones(U.shape[1], bool)
    if W is not None:
        W = _np(W)
        norms = np.linalg.norm(W, axis=1)
        dead |= norms <= tol * max(norms.max() if norms.size else 0.0, 1e-300)
    return np.flatnonzero(dead)


def cosine_matrix(W1, W2) -> np.ndarray:
    """Cosine similarity of every atom (row) of W1 with every atom of W2, shape (r1, r2)."""
    W1, W2 = _np(W1), _np(W2)
    n1 = np.linalg.norm(W1, axis=1, keepdims=True)
    n2 = np.linalg.norm(W2, axis=1, keepdims=True)
    return (W1 / np.maximum(n1, 1e-300)) @ (W2 / np.maximum(n2, 1e-300)).T


def match_atoms(W1, W2, signed: bool = False) -> tuple[float, list[tuple[int, int]]]:
    """Match the atoms of two banks one-to-one by the Hungarian algorithm on cosine similarity.

    Returns ``(mean_cos, pairs)``: the mean similarity of the matched atoms and the pairs ``(i, j)``
    (atom i of W1 with atom j of W2), sorted by i.  With ``signed=False`` (default) the similarity is
    ``|cos|`` — right for signed methods (PCA, ICA), whose atoms are defined up to sign; pass
    ``signed=True`` for non-negative banks if a sign flip should count as a mismatch.  With banks of
    different sizes, ``min(r1, r2)`` pairs are returned.
    """
    sim = cosine_matrix(W1, W2)
    if not signed:
        sim = np.abs(sim)
    rows, cols = linear_sum_assignment(-sim)
    pairs = sorted(zip(rows.tolist(), cols.tolist()))
    mean_cos = float(np.mean([sim[i, j] for i, j in pairs])) if pairs else 0.0
    return mean_cos, pairs


ZERO_TOL = 1e-8


class StreamingDiagnostics:
    """Relative error, l0 sparsity, Hoyer sparsity and dead concepts of a factorisation, accumulated over row
    chunks (so that a class larger than memory is measured exactly)."""

    def __init__(self, r: int, scale: float):
        self.r = r
        self.thresh = ZERO_TOL * max(scale, 1e-300)
        self.err2 = 0.0
        self.norm2 = 0.0
        self.zeros = 0
        self.count = 0
        self.hoyer_sum = 0.0
        self.hoyer_rows = 0
        self.colmax = np.zeros(r)

    def add(self, A: np.ndarray, U: np.ndarray, recon: np.ndarray) -> None:
        A64 = A.astype(np.float64)
        self.err2 += float(np.square(A64 - recon).sum())
        self.norm2 += float(np.square(A64).sum())
        absU = np.abs(U.astype(np.float64))
        self.zeros += int((absU <= self.thresh).sum())
        self.count += absU.size
        self.colmax = np.maximum(self.colmax, absU.max(axis=0) if len(absU) else 0)
        if self.r >= 2:
            l1 = absU.sum(1)
            l2 = np.sqrt(np.square(absU).sum(1))
            keep = l2 > 0
            sq = np.sqrt(self.r)
            self.hoyer_sum += float(((sq - l1[keep] / l2[keep]) / (sq - 1)).sum())
            self.hoyer_rows += int(keep.sum())

    def result(self, W: np.ndarray) -> dict:
        norms = np.linalg.norm(W, axis=1)
        dead = (self.colmax <= self.thresh) | (norms <= ZERO_TOL * max(norms.max(initial=0.0), 1e-300))
        return {
            "rel_error": float(np.sqrt(self.err2 / self.norm2)) if self.norm2 > 0 else 0.0,
            "sparsity_l0": float(self.zeros / self.count) if self.count else 0.0,
            "hoyer": (float(self.hoyer_sum / self.hoyer_rows) if self.hoyer_rows else 0.0) if self.r >= 2 else 1.0,
            "dead": int(dead.sum()),
            "dead_concepts": np.flatnonzero(dead).tolist(),
        }
