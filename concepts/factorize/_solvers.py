"""Torch building blocks shared by the factorizers (CPU and CUDA, float32).

Convention: the coefficients are kept transposed, ``Ut`` (r x n), so that the row updated by a
coordinate step is contiguous.  With ``P = W A^T`` (r x n) and ``G = W W^T`` (r x r) computed once,
every quantity of a least-squares problem in U with W fixed costs O(r^2 n):

    ||A - U W||^2 = ||A||^2 - 2 <Ut, P> + <Ut, G Ut>.
"""
from __future__ import annotations

import math

import torch

from .base import randn


def hals_rows(X: torch.Tensor, Q: torch.Tensor, H: torch.Tensor, nonneg: bool = True,
              eps_diag: float = 1e-12) -> float:
    """One pass of exact block coordinate descent over the rows of ``X`` (r x m), in place.

    Minimises ``0.5 <X, H X> - <X, Q>`` subject to X >= 0 when ``nonneg``: for the coefficients,
    ``X = Ut``, ``Q = W A^T``, ``H = W W^T``; for the bank, ``X = W``, ``Q = Ut A``, ``H = Ut Ut^T``.  Row k becomes ``max(0, X_k + (Q_k - H_k X) / H_kk)``.  A row whose
    ``H_kk`` is (numerically) zero is left untouched instead of being zeroed — the update is undefined
    there, and zeroing it is what makes some HALS implementations kill concepts.
    Returns the squared Frobenius norm of the change.
    """
    if X.device.type == "cpu" and X.numel() <= SMALL_ROWS and X.dtype == torch.float32:
        return _hals_rows_numpy(X.numpy(), Q.numpy(), H.numpy(), nonneg, eps_diag)
    diag = torch.diagonal(H)
    diag_list = diag.tolist()
    thresh = eps_diag * max(max(diag_list), 1e-30)
    old = X.clone()
    for k in range(X.shape[0]):
        hkk = diag_list[k]
        if hkk <= thresh:
            continue
        row = X[k]
        row.add_(torch.addmv(Q[k], X.T, H[k], alpha=-1.0), alpha=1.0 / hkk)
        if nonneg:
            row.clamp_min_(0)
    return float(torch.linalg.vector_norm(X - old).square())


#: factors up to this many entries take the NumPy path of :func:`hals_rows` (same updates, a few microseconds per
#: row instead of ~30: on a class of a few hundred rows the fit is a loop of tiny kernels, and torch's per-call cost
#: was most of its time)
SMALL_ROWS = 1 << 20


def _hals_rows_numpy(X, Q, H, nonneg: bool, eps_diag: float) -> float:
    """:func:`hals_rows` on NumPy views of CPU tensors (in place; the tensors share the memory)."""
    import numpy as np

    diag = np.diagonal(H)
    thresh = eps_diag * max(float(diag.max(initial=0.0)), 1e-30)
    change = 0.0
    for k in range(X.shape[0]):
        hkk = float(diag[k])
        if hkk <= thresh:
            continue
        row = X[k]
        old = row.copy()
        row += (Q[k] - H[k] @ X) / hkk
        if nonneg:
            np.maximum(row, 0, out=row)
        old -= row
        change += float(old @ old)
    return change


def mu_rows(X: torch.Tensor, Q: torch.Tensor, H: torch.Tensor, eps: float = 1e-10) -> float:
    """One multiplicative (Lee & Seung) update of ``X`` (r x m, >= 0) for the same problem, in place."""
    old = X.clone()
    X.mul_(Q.clamp_min(0) / (H @ X).clamp_min_(eps))
    return float(torch.linalg.vector_norm(X - old).square())


def inner_iterations(update, X, Q, H, max_inner: int, inner_tol: float) -> int:
    """Repeat a row update on the same (Q, H) while it still moves X (Gillis & Glineur's accelerated HALS).

    Stops after ``max_inner`` passes or when a pass changes X by less than ``inner_tol`` times the first
    pass's change.  Returns the number of passes.
    """
    first = None
    for it in range(max(1, max_inner)):
        change = update(X, Q, H)
        if first is None:
            first = change
            if first == 0:
                return it + 1
        elif change <= (inner_tol ** 2) * first:
            return it + 1
    return max(1, max_inner)


def nnls_rows(Ut: torch.Tensor, P: torch.Tensor, G: torch.Tensor, max_iter: int = 200, tol: float = 1e-5,
              check_every: int = 5) -> int:
    """Refine ``Ut`` (r x n, in place) towards the non-negative least squares solution with W fixed.

    Exact coordinate descent sweeps until the projected gradient (the KKT violation) has Frobenius norm
    ``<= tol * ||P||`` (the gradient norm at U = 0), checked every ``check_every`` sweeps.
    Returns the number of sweeps.
    """
    scale = float(torch.linalg.vector_norm(P))
    if scale == 0:
        Ut.zero_()
        return 0
    for it in range(1, max_iter + 1):
        hals_rows(Ut, P, G)
        if it % check_every == 0 or it == max_iter:
            grad = G @ Ut - P
            pg = torch.where(Ut > 0, grad, grad.clamp_max(0))
            if float(torch.linalg.vector_norm(pg)) <= tol * scale:
                return it
    return max_iter


def nnls_transform(X: torch.Tensor, W: torch.Tensor, chunk_rows: int, max_iter: int, tol: float) -> torch.Tensor:
    """U >= 0 minimising ||X - U W|| with W fixed, ``chunk_rows`` rows at a time: W W^T once, W X^T per chunk,
    a clipped least-squares start, then :func:`nnls_rows` refinement."""
    from .base import chunks

    G = W @ W.T
    out = torch.empty((X.shape[0], W.shape[0]), dtype=X.dtype, device=X.device)
    for sl in chunks(X.shape[0], chunk_rows):
        P = W @ X[sl].T
        Ut = clipped_least_squares(P, G)
        nnls_rows(Ut, P, G, max_iter, tol)
        out[sl] = Ut.T
    return out


def clipped_least_squares(P: torch.Tensor, G: torch.Tensor, nonneg: bool = True) -> torch.Tensor:
    """``max(0, G^-1 P)`` (r x n): the least-squares coefficients, clipped; a small ridge keeps G invertible."""
    r = G.shape[0]
    ridge = 1e-6 * float(torch.diagonal(G).mean().clamp_min(1e-30))
    eye = torch.eye(r, dtype=G.dtype, device=G.device)
    L, info = torch.linalg.cholesky_ex((G + ridge * eye).double())
    if int(info) != 0:
        sol = torch.linalg.lstsq((G + ridge * eye).double(), P.double()).solution
    else:
        sol = torch.cholesky_solve(P.double(), L)
    sol = sol.to(P.dtype)
    return sol.clamp_min_(0) if nonneg else sol


def sq_error_from_grams(normA2: float, Q: torch.Tensor, H: torch.Tensor, W: torch.Tensor) -> float:
    """``||A - U W||^2 = ||A||^2 - 2 <W, Q> + <H, W W^T>`` with ``Q = U^T A`` and ``H = U^T U`` (float64 sums)."""
    Y = W
    cross = float((Y.double() * Q.double()).sum())
    quad = float((H.double() * (Y.double() @ Y.double().T)).sum())
    return max(normA2 - 2.0 * cross + quad, 0.0)


def randomized_svd(A: torch.Tensor, k: int, gen: torch.Generator, n_oversamples: int = 10,
                   n_iter: int | None = None):
    """Truncated SVD ``A ~ U diag(S) Vt`` by a randomized range finder (Halko et al.), seeded by ``gen``.

    ``n_iter`` power iterations (default: 7 when k < 0.1 min(A.shape) else 4, as scikit-learn).
    """
    n, d = A.shape
    rank = min(n, d)
    ell = min(k + n_oversamples, rank)
    if n_iter is None:
        n_iter = 7 if k < 0.1 * rank else 4
    if ell >= rank or rank <= 64:
        U, S, Vt = torch.linalg.svd(A.double(), full_matrices=False)
        return U[:, :k].to(A.dtype), S[:k].to(A.dtype), Vt[:k].to(A.dtype)
    omega = randn((d, ell), gen, A)
    Q, _ = torch.linalg.qr(A @ omega)
    for _ in range(n_iter):
        Z, _ = torch.linalg.qr(A.T @ Q)
        Q, _ = torch.linalg.qr(A @ Z)
    B = (Q.T @ A).double()
    Ub, S, Vt = torch.linalg.svd(B, full_matrices=False)
    U = Q.double() @ Ub
    return U[:, :k].to(A.dtype), S[:k].to(A.dtype), Vt[:k].to(A.dtype)


def nndsvd(A: torch.Tensor, r: int, gen: torch.Generator, variant: str = "nndsvd"):
    """Non-negative double SVD initialisation (Boutsidis & Gallopoulos 2008).

    Returns (W (r x d), Ut (r x n)).  ``nndsvda`` fills the zeros with the mean of A, ``nndsvdar`` with
    small random values (mean/100), ``nndsvd`` leaves them (sparse start; not for multiplicative updates).
    """
    U, S, Vt = randomized_svd(A, r, gen)
    n, d = A.shape
    W = torch.zeros((r, d), dtype=A.dtype, device=A.device)
    Ut = torch.zeros((r, n), dtype=A.dtype, device=A.device)
    W[0] = math.sqrt(float(S[0])) * Vt[0].abs()
    Ut[0] = math.sqrt(float(S[0])) * U[:, 0].abs()
    for j in range(1, r):
        x, y = U[:, j], Vt[j]
        xp, xn = x.clamp_min(0), (-x).clamp_min(0)
        yp, yn = y.clamp_min(0), (-y).clamp_min(0)
        nxp, nyp = float(torch.linalg.vector_norm(xp)), float(torch.linalg.vector_norm(yp))
        nxn, nyn = float(torch.linalg.vector_norm(xn)), float(torch.linalg.vector_norm(yn))
        mp, mn = nxp * nyp, nxn * nyn
        if mp > mn:
            u, v, sigma = xp / max(nxp, 1e-30), yp / max(nyp, 1e-30), mp
        else:
            u, v, sigma = xn / max(nxn, 1e-30), yn / max(nyn, 1e-30), mn
        scale = math.sqrt(float(S[j]) * sigma)
        Ut[j] = scale * u
        W[j] = scale * v
    eps = 1e-6
    W[W < eps] = 0
    Ut[Ut < eps] = 0
    if variant == "nndsvda":
        avg = float(A.mean())
        W[W == 0] = avg
        Ut[Ut == 0] = avg
    elif variant == "nndsvdar":
        avg = float(A.mean())
        W[W == 0] = (avg / 100) * randn((int((W == 0).sum()),), gen, A).abs()
        Ut[Ut == 0] = (avg / 100) * randn((int((Ut == 0).sum()),), gen, A).abs()
    elif variant != "nndsvd":
        raise ValueError(variant)
    return W, Ut


def random_init(A: torch.Tensor, r: int, gen: torch.Generator):
    """scikit-learn's 'random' initialisation: |N(0,1)| * sqrt(mean(A) / r)."""
    n, d = A.shape
    scale = math.sqrt(max(float(A.mean()), 1e-12) / r)
    W = scale * randn((r, d), gen, A).abs()
    Ut = scale * randn((r, n), gen, A).abs()
    return W, Ut
