"""k-means: concepts are cluster centroids, each row is coded by its nearest centroid.

Lloyd's algorithm in torch (CPU or CUDA) from k-means++ seeds, ``n_init`` restarts, the run with the
lowest inertia kept.  ``transform`` returns the one-hot assignment U (n x r), so that ``U W`` is the
nearest centroid — a reconstruction, unlike codes made of distances.  With ``encoding='soft'``, U is
the softmax of ``-||a - w_k||^2 / (temperature * mean squared distance)`` (rows sum to 1).
"""
from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .base import ConceptExtractor, chunks, rand


def _sq_dist(X: torch.Tensor, C: torch.Tensor, xsq: torch.Tensor | None = None) -> torch.Tensor:
    xsq = X.square().sum(1, keepdim=True) if xsq is None else xsq
    return (xsq - 2 * X @ C.T + C.square().sum(1)[None, :]).clamp_min_(0)


def kmeans_pp(X: torch.Tensor, r: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (D^2 sampling, one candidate per step)."""
    n = X.shape[0]
    xsq = X.square().sum(1, keepdim=True)
    first = int(torch.randint(n, (1,), generator=gen))
    centers = [X[first]]
    closest = _sq_dist(X, X[first:first + 1], xsq)[:, 0]
    for _ in range(1, r):
        total = float(closest.sum())
        if total <= 0:
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            u = float(rand((1,), gen, closest)) * total
            idx = int(torch.searchsorted(torch.cumsum(closest.double(), 0), torch.tensor([u], dtype=torch.float64,
                                                                                       device=X.device)))
            idx = min(idx, n - 1)
        centers.append(X[idx])
        closest = torch.minimum(closest, _sq_dist(X, X[idx:idx + 1], xsq)[:, 0])
    return torch.stack(centers)


def lloyd(X: torch.Tensor, C: torch.Tensor, max_iter: int, tol: float):
    """Lloyd iterations from centroids C. Returns (C, labels, inertia, n_iter, converged)."""
    xsq = X.square().sum(1, keepdim=True)
    r = C.shape[0]
    scale = float(X.var(0, unbiased=False).mean()) + 1e-30
    labels = None
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        d2 = _sq_dist(X, C, xsq)
        labels = d2.argmin(1)
        counts = torch.bincount(labels, minlength=r).to(X.dtype)
        sums = torch.zeros_like(C).index_add_(0, labels, X)
        new = C.clone()
        filled = counts > 0
        new[filled] = sums[filled] / counts[filled, None]
        if not bool(filled.all()):  # empty cluster: move it to the row farthest from its centroid
            far = d2.gather(1, labels[:, None])[:, 0]
            for k in (~filled).nonzero().flatten().tolist():
                i = int(far.argmax())
                new[k] = X[i]
                far[i] = -1
        shift = float((new - C).square().sum(1).max())
        C = new
        if shift <= tol * scale:
            converged = True
            break
    d2 = _sq_dist(X, C, xsq)
    labels = d2.argmin(1)
    inertia = float(d2.gather(1, labels[:, None]).sum())
    return C, labels, inertia, it, converged


class KMeans(ConceptExtractor):
    """k-means concepts: ``components_`` are the r centroids; U is the one-hot (or soft) assignment.

    Parameters: n_components (r), n_init (restarts), max_iter, tol (centroid shift relative to the mean
    channel variance), encoding ('onehot' or 'soft'), temperature (soft codes), chunk_rows,
    random_state, device.
    """

    method = "kmeans"
    _parameter_constraints = {
        **ConceptExtractor._parameter_constraints,
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "encoding": [StrOptions({"onehot", "soft"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components=10, *, n_init=3, max_iter=100, tol=1e-4, encoding="onehot",
                 temperature=1.0, chunk_rows=65536, random_state=None, device=None):
        self.n_components = n_components
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.encoding = encoding
        self.temperature = temperature
        self.chunk_rows = chunk_rows
        self.random_state = random_state
        self.device = device

    def _max_rank(self, n, d):
        return n

    def _fit(self, X, gen):
        r = int(self.n_components)
        best = None
        for _ in range(int(self.n_init)):
            C0 = kmeans_pp(X, r, gen)
            C, labels, inertia, n_iter, conv = lloyd(X, C0, int(self.max_iter), float(self.tol))
            if best is None or inertia < best[2]:
                best = (C, labels, inertia, n_iter, conv)
        C, labels, inertia, n_iter, conv = best
        self.inertia_ = inertia
        self._scale = float(inertia) / X.shape[0] + 1e-30
        self.scale_ = self._scale
        U = self._encode(X, C)
        return C, U, {"n_iter": n_iter, "converged": conv}

    _state = ("scale_",)

    def _encode(self, X, C):
        out = torch.zeros((X.shape[0], C.shape[0]), dtype=X.dtype, device=X.device)
        for sl in chunks(X.shape[0], self.chunk_rows):
            d2 = _sq_dist(X[sl], C)
            if self.encoding == "onehot":
                out[sl].scatter_(1, d2.argmin(1, keepdim=True), 1.0)
            else:
                out[sl] = torch.softmax(-d2 / (float(self.temperature) * float(self.scale_)), dim=1)
        return out

    def _transform(self, X):
        return self._encode(X, self._W_of(X))
