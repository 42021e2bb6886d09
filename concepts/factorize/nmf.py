"""Non-negative matrix factorisation (the CRAFT concept extractor), torch solvers on CPU and CUDA.

Solves ``min 0.5 ||A - U W||_F^2`` over ``U >= 0`` (n x r) and ``W >= 0`` (r x D) by alternating
updates of the two factors.  Each outer iteration computes ``A W^T``, ``W W^T`` (for U) and ``U^T A``,
``U^T U`` (for W) once — the O(n D r) matrix products — and then runs cheap O(r^2 (n + D)) passes on
them:

* ``solver='hals'`` (default): exact block coordinate descent on one row of the factor at a time
  (hierarchical alternating least squares), repeated on the same products while it still improves
  (Gillis & Glineur's accelerated HALS).  A concept whose Gram diagonal is ~0 is skipped, never zeroed,
  and a concept that dies anyway (all-zero atom or coefficients) is re-seeded from the positive part of
  the residual of the worst-reconstructed row.
* ``solver='mu'``: Lee & Seung multiplicative updates (with the same inner repetitions).

Stops when the relative error ``e = ||A - UW|| / ||A||`` improved by less than ``tol * e`` per outer
iteration on average over the last ``window`` iterations (a window, because HALS's progress comes in
bursts after plateaus), or after ``max_iter`` iterations.  ``transform`` solves the non-negative least squares
problem for each row with W fixed: ``A W^T`` and ``W W^T`` once, least squares clipped at 0 as a start,
then exact coordinate descent sweeps to convergence (rows in chunks of ``chunk_rows``).
"""
from __future__ import annotations

import math
import time
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ..errors import ConceptsError
from . import _solvers as S
from .base import ConceptExtractor

INITS = ("nndsvd", "nndsvda", "nndsvdar", "random")
AUTO_MULTI_START_ENTRIES = 4_000_000  # n x D up to which n_init='auto' makes 3 starts
EXTRA_START_INITS = ("nndsvdar", "random")
SOLVERS = ("hals", "mu")


class NMF(ConceptExtractor):
    """Non-negative matrix factorisation ``A ~ U W`` with U, W >= 0.

    Parameters
    ----------
    n_components : number of concepts r.
    solver : 'hals' (accelerated HALS, default) or 'mu' (multiplicative updates).
    init : 'nndsvda' (default, as CRAFT), 'nndsvd', 'nndsvdar' or 'random'.
    n_init : number of starts; the first from ``init``, the others alternately from 'nndsvdar' and 'random'
        (seeded from ``random_state``); the fit with the lowest error is kept. 'auto' (default): 3 when the
        matrix has at most ``AUTO_MULTI_START_ENTRIES`` entries (a class of CRAFT crops: a fit takes ~0.1 s),
        else 1. NMF has local optima: on 20 real crop matrices (ten Imagenette classes, fp32 and bf16) one start
        reached scikit-learn's error (within 1e-5) or lower on 13 at r = 10 and 15 at r = 25, three starts on 18
        and 19.
    max_iter, tol, window : outer iteration limit; stop when the relative error improved by less than
        ``tol`` (relative, per iteration) on average over the last ``window`` iterations.
    max_inner : passes on the same products per outer step (None: Gillis & Glineur's rule, at most 50).
    inner_tol : stop the inner passes when one moves the factor by < inner_tol x the first pass's move.
    reseed_dead : re-seed concepts that die during fitting (HALS and MU).
    transform_max_iter, transform_tol : coordinate descent limits of the NNLS in ``transform``.
    chunk_rows : rows per block in ``transform``.
    random_state : seed (random init, randomized SVD of nndsvd*).  device : torch device (None: auto).
    """

    nonnegative_input = True
    method = "nmf"
    _parameter_constraints = {
        **ConceptExtractor._parameter_constraints,
        "solver": [StrOptions(set(SOLVERS))],
        "init": [StrOptions(set(INITS))],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "window": [Interval(Integral, 1, None, closed="left")],
        "max_inner": [None, Interval(Integral, 1, None, closed="left")],
        "inner_tol": [Interval(Real, 0, None, closed="left")],
        "reseed_dead": ["boolean"],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left")],
        "transform_tol": [Interval(Real, 0, None, closed="left")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
    }
    #: fixed cost of one row update in flop-equivalents (Python + kernel launch); larger values mean fewer inner passes
    _row_overhead = 2e5

    def __init__(self, n_components=10, *, solver="hals", init="nndsvda", n_init="auto", max_iter=200, tol=1e-6,
                 window=10, max_inner=None, inner_tol=0.1, reseed_dead=True, transform_max_iter=200,
                 transform_tol=1e-5, chunk_rows=65536, random_state=None, device=None, verbose=False):
        self.n_components = n_components
        self.solver = solver
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.window = window
        self.max_inner = max_inner
        self.inner_tol = inner_tol
        self.reseed_dead = reseed_dead
        self.transform_max_iter = transform_max_iter
        self.transform_tol = transform_tol
        self.chunk_rows = chunk_rows
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def _initialise(self, X, r, gen, init):
        if init in ("nndsvd", "nndsvda", "nndsvdar"):
            return S.nndsvd(X, r, gen, init)
        if init == "random":
            return S.random_init(X, r, gen)
        raise ConceptsError(f"unknown NMF init {init!r}; choose one of {', '.join(INITS)}")

    def _starts(self, n, d) -> int:
        if self.n_init == "auto":
            return 3 if n * d <= AUTO_MULTI_START_ENTRIES else 1
        return int(self.n_init)  # an int >= 1 (_parameter_constraints)

    def _inner_limits(self, n, d, r):
        """Passes per outer step: Gillis & Glineur's 1 + 0.5 rho, rho = cost of the products / cost of a
        pass, where a pass also pays a fixed per-row overhead (Python and kernel launches)."""
        if self.max_inner is not None:
            return int(self.max_inner), int(self.max_inner)
        products = float(n) * d * r
        overhead = self._row_overhead * r
        rho_u = 1 + products / (n * r * r + overhead)
        rho_w = 1 + products / (d * r * r + overhead)
        return min(20, 1 + int(0.5 * rho_u)), min(20, 1 + int(0.5 * rho_w))

    def _reseed(self, X, W, Ut, P, G, rowsq) -> bool:
        """Re-seed dead concepts from the residuals of the worst-reconstructed rows. Returns True if any."""
        dead = ((W.amax(dim=1) <= 0) | (Ut.amax(dim=1) <= 0)).nonzero().flatten().tolist()
        if not dead:
            return False
        resid = rowsq - 2 * (Ut * P).sum(0) + (Ut * (G @ Ut)).sum(0)
        worst = torch.topk(resid, k=min(len(dead), resid.numel())).indices.tolist()
        for k, i in zip(dead, worst):
            row = X[i] - Ut[:, i] @ W
            atom = row.clamp_min(0)
            if float(atom.max()) <= 0:
                atom = X[i].clone()
            W[k] = atom
            P[k] = W[k] @ X.T
            if self.solver == "mu":
                # multiplicative updates cannot leave exact zeros: start from a positive, half-size
                # single-atom least squares fit and fill the atom's zeros with a small value
                fill = 1e-3 * float(X.mean())
                W[k] = atom.clamp_min(fill)
                P[k] = W[k] @ X.T
                Ut[k] = 0.5 * (P[k] / float(W[k] @ W[k])).clamp_min(0) + fill
            else:
                Ut[k] = 0  # the next HALS pass gives the exact coefficients
        G.copy_(W @ W.T)
        return True

    def _fit(self, X, gen):
        starts = self._starts(*X.shape)
        best = None
        errors = []
        for k in range(starts):
            init = self.init if k == 0 else EXTRA_START_INITS[(k - 1) % len(EXTRA_START_INITS)]
            W, U, info = self._fit_from(X, gen, init)
            errors.append(info["final_error"])
            if best is None or info["final_error"] < best[2]["final_error"]:
                best = (W, U, info)
        W, U, info = best
        info.update(n_init=starts, start_errors=errors)
        return W, U, info

    def _fit_from(self, X, gen, init):
        n, d = X.shape
        r = int(self.n_components)
        start = time.perf_counter()
        W, Ut = self._initialise(X, r, gen, init)
        normA2 = float(torch.linalg.vector_norm(X, dtype=torch.float64)) ** 2
        if normA2 == 0:
            return W * 0, Ut.T * 0, {"n_iter": 0, "converged": True, "history": [], "final_error": 0.0}
        update = S.hals_rows if self.solver == "hals" else S.mu_rows
        inner_u, inner_w = self._inner_limits(n, d, r)
        rowsq = X.square().sum(1) if self.reseed_dead else None
        history = [(0.0, math.inf)]
        last_reseed = 0
        converged = False
        it = 0
        for it in range(1, int(self.max_iter) + 1):
            P = W @ X.T
            G = W @ W.T
            reseeded = False
            if self.reseed_dead and it <= 0.8 * self.max_iter:
                reseeded = self._reseed(X, W, Ut, P, G, rowsq)
            S.inner_iterations(update, Ut, P, G, inner_u, self.inner_tol)
            Q = Ut @ X
            H = Ut @ Ut.T
            S.inner_iterations(update, W, Q, H, inner_w, self.inner_tol)
            rel = math.sqrt(S.sq_error_from_grams(normA2, Q, H, W) / normA2)
            history.append((time.perf_counter() - start, rel))
            if self.verbose:
                print(f"nmf[{self.solver}] iter {it}: rel error {rel:.5f}")
            last_reseed = it if reseeded else last_reseed
            window = min(self.window, it - last_reseed)
            if window >= 1 and history[-1 - window][1] - rel < self.tol * window * rel:
                converged = True
                break
        # final coefficients: the NNLS solution with the final bank (what transform gives)
        P = W @ X.T
        G = W @ W.T
        S.nnls_rows(Ut, P, G, self.transform_max_iter, self.transform_tol)
        final = math.sqrt(max(S.sq_error_from_grams(normA2, Ut @ X, Ut @ Ut.T, W), 0.0) / normA2)
        return W, Ut.T, {"n_iter": it, "converged": converged, "history": history[1:], "final_error": final}

    # ------------------------------------------------------------------ transform
    def _transform(self, X):
        return S.nnls_transform(X, self._W_of(X), self.chunk_rows, self.transform_max_iter, self.transform_tol)
