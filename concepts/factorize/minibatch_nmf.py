"""Mini-batch (online) NMF and Semi-NMF: the classic concept dictionaries, streamed past memory.

``A ~ U W`` with ``U >= 0`` (n x r) and ``W >= 0`` (NMF) or signed (Semi-NMF), learnt from batches of rows — an
array, or a :class:`~concepts.factorize.stream.RowStream` over the activation caches — in the online scheme of
Mairal et al. (2010): for each batch ``X`` (B x D),

1. the batch's coefficients, ``U = argmin_{U >= 0} ||X - U W||`` with the bank fixed: least squares clipped at 0,
   then ``inner_passes`` sweeps of exact coordinate descent (HALS) on ``W X^T`` and ``W W^T``;
2. the sufficient statistics of the past batches, with a forgetting factor ρ: ``H <- ρ H + U^T U`` (r x r),
   ``Q <- ρ Q + U^T X`` (r x D);
3. the bank minimises the surrogate ``sum_past ||X - U W||^2`` given those statistics: ``bank_passes`` HALS sweeps
   on (Q, H) for NMF (rows clipped at 0), the exact least-squares solution ``W = H^-1 Q`` for Semi-NMF.

Every step costs O(B D r) for two products plus O(r^2 (B + D)) per sweep; memory is O(r D + B D).  A concept
that is never used (its diagonal of H ~ 0) is re-seeded on the residual of the batch's worst-reconstructed row.
scikit-learn's ``MiniBatchNMF`` (Lefèvre et al. multiplicative updates) is the baseline of
``benchmarks/minibatch_nmf.py``.  ``transform`` is the exact NNLS of the full-batch estimators (W fixed).
"""
from __future__ import annotations

import math
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from . import _solvers as S
from ._checks import InputError, as_tensor, check_fitted, output, validate_params
from .base import DictionaryEstimator, make_generator
from .stream import RowStream

_EPS = 1e-12


class MiniBatchNMF(DictionaryEstimator):
    """Online NMF ``A ~ U W``, ``U, W >= 0``, from batches of rows (array or RowStream), on CPU or CUDA.

    Parameters
    ----------
    n_components : number of concepts r.
    batch_size : rows per batch.
    max_epochs, n_steps : passes over the data, or a number of batches (takes precedence).
    forget_factor : ρ, the weight of the past statistics at each batch (1: all batches weigh the same; smaller
        values forget the early, poorly-coded batches faster; 0.7 — scikit-learn's default too — reached batch
        NMF's error within 0.3% in 10 epochs on a planted problem, 0.9 within 6%), or 'auto': ρ_t = (1 - 1/t)^4.
    inner_passes : HALS sweeps on a batch's coefficients.  bank_passes : HALS sweeps on the bank per batch.
    tol : stop when an epoch's mean batch relative error improved by less than ``tol`` (relative) over the
        previous epoch's (0: run every epoch).
    init : 'nndsvda' (of a sample of ``init_rows`` rows; 'random' when r exceeds the sample's rank) or 'random'.
    transform_max_iter, transform_tol, chunk_rows : the NNLS of ``transform``.
    eval_rows : rows (a sample) on which ``reconstruction_err_`` is measured after fitting.
    random_state, device, verbose.
    """

    method = "minibatch_nmf"
    signed = False
    nonnegative_input = True  # NMF needs non-negative activations (the flag every estimator has)
    overcomplete = True  # more atoms than rows or channels is a valid dictionary
    _state: tuple[str, ...] = ()

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "n_steps": [Interval(Integral, 1, None, closed="left"), None],
        "forget_factor": [Interval(Real, 0, 1, closed="right"), StrOptions({"auto"})],
        "inner_passes": [Interval(Integral, 1, None, closed="left")],
        "bank_passes": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "init": [StrOptions({"nndsvda", "random"})],
        "init_rows": [Interval(Integral, 1, None, closed="left")],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left")],
        "transform_tol": [Interval(Real, 0, None, closed="left")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
        "eval_rows": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str, torch.device, None],
        "verbose": ["verbose"],
    }

    def __init__(self, n_components=10, *, batch_size=1024, max_epochs=10, n_steps=None, forget_factor=0.7,
                 inner_passes=10, bank_passes=3, tol=1e-4, init="nndsvda", init_rows=16384, transform_max_iter=200,
                 transform_tol=1e-5, chunk_rows=65536, eval_rows=65536, random_state=None, device=None,
                 verbose=False):
        self.n_components = n_components
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.n_steps = n_steps
        self.forget_factor = forget_factor
        self.inner_passes = inner_passes
        self.bank_passes = bank_passes
        self.tol = tol
        self.init = init
        self.init_rows = init_rows
        self.transform_max_iter = transform_max_iter
        self.transform_tol = transform_tol
        self.chunk_rows = chunk_rows
        self.eval_rows = eval_rows
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    _transient = ("_online_",)

    # ------------------------------------------------------------------ data
    def _data(self, X, reset: bool):
        if isinstance(X, RowStream):
            if reset:
                self.n_features_in_ = X.n_features
            elif X.n_features != self.n_features_in_:
                raise InputError(f"X has {X.n_features} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input")
            return X, X.n_rows
        T, _ = as_tensor(self, X, reset=reset, device=self.device_, nonnegative=not self.signed)
        return T, T.shape[0]

    def _sample(self, data, n: int, gen: torch.Generator) -> torch.Tensor:
        if isinstance(data, RowStream):
            seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))
            out = torch.from_numpy(data.sample(n, seed=seed)).to(self.device_)
            if not self.signed and out.numel() and float(out.min()) < 0:
                raise InputError(f"Negative values in data passed to {type(self).__name__}; use "
                                 "'minibatch_semi_nmf' for signed activations")
            return out
        if data.shape[0] <= n:
            return data
        return data[torch.randperm(data.shape[0], generator=gen)[:n].to(data.device)]

    def _batches(self, data, epoch: int, gen: torch.Generator):
        B = int(self.batch_size)
        if isinstance(data, RowStream):
            for batch in data.epoch(epoch):
                batch = batch.to(self.device_, non_blocking=True)
                if not self.signed and float(batch.min()) < 0:
                    raise InputError(f"Negative values in data passed to {type(self).__name__}; use "
                                     "'minibatch_semi_nmf' for signed activations")
                for s in range(0, batch.shape[0], B):
                    yield batch[s:s + B]
            return
        perm = torch.randperm(data.shape[0], generator=gen).to(data.device)
        for s in range(0, data.shape[0], B):
            yield data[perm[s:s + B]]

    # ------------------------------------------------------------------ the online steps
    def _init_bank(self, sample: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        r = int(self.n_components)
        n, d = sample.shape
        if self.init == "nndsvda" and r <= min(n, d) and float(sample.abs().sum()) > 0:
            W, _ = S.nndsvd(sample, r, gen, "nndsvda")
        else:
            W, _ = S.random_init(sample, r, gen)
        return W.contiguous()

    def _code(self, X: torch.Tensor, W: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """The batch's coefficients Ut (r x B): clipped least squares, then HALS sweeps."""
        P = W @ X.T
        Ut = S.clipped_least_squares(P, G)
        for _ in range(int(self.inner_passes)):
            S.hals_rows(Ut, P, G)
        return Ut

    def _update_bank(self, st: dict) -> None:
        W, Q, H = st["W"], st["Q"], st["H"]
        for _ in range(int(self.bank_passes)):
            S.hals_rows(W, Q, H)

    def _reseed(self, X, Ut, st: dict) -> None:
        W, H = st["W"], st["H"]
        diag = torch.diagonal(H)
        dead = ((diag <= 1e-10 * float(diag.max().clamp_min(_EPS))) | (W.abs().amax(1) <= 0)).nonzero().flatten()
        if not dead.numel():
            return
        resid = X - Ut.T @ W
        worst = torch.topk(resid.square().sum(1), min(dead.numel(), X.shape[0])).indices
        for k, i in zip(dead.tolist(), worst.tolist()):
            atom = resid[i] if self.signed else resid[i].clamp_min(0)
            if float(atom.abs().max()) <= 0:
                atom = X[i].clone()
            W[k] = atom

    def _new_state(self, sample: torch.Tensor, gen: torch.Generator) -> dict:
        W = self._init_bank(sample, gen)
        r, d = W.shape
        return {"W": W, "H": torch.zeros((r, r), device=W.device), "Q": torch.zeros((r, d), device=W.device),
                "gen": gen, "step": 0, "rows": 0}

    def _rho(self, step: int) -> float:
        if step == 0:
            return 0.0
        if isinstance(self.forget_factor, str):  # 'auto': a memory of ~step / p batches (p = 4)
            return (1.0 - 1.0 / (step + 1)) ** 4
        return float(self.forget_factor)

    def _step(self, X: torch.Tensor, st: dict) -> float:
        W = st["W"]
        G = W @ W.T
        Ut = self._code(X, W, G)
        rho = self._rho(st["step"])
        st["H"].mul_(rho).add_(Ut @ Ut.T)
        Qb = Ut @ X
        st["Q"].mul_(rho).add_(Qb)
        # the batch's error from the products already made: ||X||^2 - 2 <Ut X, W> + <Ut Ut^T, W W^T>
        normX2 = float(X.double().square().sum())
        err2 = S.sq_error_from_grams(normX2, Qb, Ut @ Ut.T, W)
        self._update_bank(st)
        if st["step"] % 10 == 0:
            self._reseed(X, Ut, st)
        st["step"] += 1
        st["rows"] += X.shape[0]
        return math.sqrt(err2 / normX2) if normX2 > 0 else 0.0

    # ------------------------------------------------------------------ public API
    def fit(self, X, y=None):
        """Learn the bank from rows ``X`` (array, tensor, or RowStream). Returns self."""
        validate_params(self)
        data, n = self._data(X, reset=True)
        gen = make_generator(self.random_state)
        start = time.perf_counter()
        sample = self._sample(data, int(self.init_rows), gen)
        st = self._new_state(sample, gen)
        self._online_ = st
        steps_per_epoch = max(1, math.ceil(n / int(self.batch_size)))
        total = int(self.n_steps) if self.n_steps is not None else int(self.max_epochs) * steps_per_epoch
        history, epoch_errors = [], []
        converged = False
        epoch = 0
        while st["step"] < total and not converged:
            errs = []
            for batch in self._batches(data, epoch, gen):
                errs.append(self._step(batch, st))
                history.append((time.perf_counter() - start, errs[-1]))
                if st["step"] >= total:
                    break
            epoch += 1
            epoch_errors.append(float(np.mean(errs)) if errs else 0.0)
            if self.verbose:
                print(f"{self.method} epoch {epoch}: mean batch rel error {epoch_errors[-1]:.5f}")
            if self.tol > 0 and len(epoch_errors) >= 2 and self.n_steps is None:
                prev, cur = epoch_errors[-2], epoch_errors[-1]
                converged = prev - cur < float(self.tol) * cur
        self.n_epochs_ = epoch
        self.converged_ = converged
        self.history_ = history
        self.epoch_errors_ = epoch_errors
        self._finish(st)
        evaluation = sample if isinstance(data, RowStream) else self._sample(data, int(self.eval_rows), gen)
        self._evaluate(evaluation)
        self.seconds_ = time.perf_counter() - start
        return self

    def partial_fit(self, X, y=None):
        """One pass over the rows ``X`` in batches (initialising from them on the first call)."""
        st = getattr(self, "_online_", None)
        if st is None:
            validate_params(self)
            data, _ = self._data(X, reset=not hasattr(self, "components_"))
            gen = make_generator(self.random_state)
            if hasattr(self, "components_"):  # continue a fitted / reloaded bank with fresh statistics
                W = torch.as_tensor(np.asarray(self.components_, np.float32)).to(self.device_).clone()
                r, d = W.shape
                st = {"W": W, "H": torch.zeros((r, r), device=W.device), "Q": torch.zeros((r, d), device=W.device),
                      "gen": gen, "step": 0, "rows": 0}
            else:
                st = self._new_state(self._sample(data, int(self.init_rows), gen), gen)
            self._online_ = st
        else:
            data, _ = self._data(X, reset=False)
        history = list(getattr(self, "history_", []))
        for batch in self._batches(data, st["step"], st["gen"]):
            history.append((0.0, self._step(batch, st)))
        self.history_ = history
        self._finish(st)
        sample = data if not isinstance(data, RowStream) else torch.from_numpy(
            data.sample(int(self.eval_rows))).to(self.device_)
        self._evaluate(sample[: int(self.eval_rows)])
        return self

    def _finish(self, st: dict) -> None:
        self.components_ = st["W"].detach().to("cpu", torch.float32).numpy().copy()
        self.n_components_, self.n_features_in_ = self.components_.shape
        self.n_iter_ = int(st["step"])
        self.n_rows_seen_ = int(st["rows"])
        self._W_device_ = st["W"].detach().clone()

    def _bank(self) -> torch.Tensor:
        W = self.__dict__.get("_W_device_")
        if W is None or W.device != self.device_:
            W = torch.as_tensor(np.asarray(self.components_, np.float32)).to(self.device_)
        return W

    def _nnls(self, X: torch.Tensor) -> torch.Tensor:
        return S.nnls_transform(X, self._bank(), int(self.chunk_rows), int(self.transform_max_iter),
                                float(self.transform_tol))

    def _evaluate(self, X: torch.Tensor) -> None:
        U = self._nnls(X)
        W = self._bank()
        err2 = norm2 = 0.0
        for s in range(0, X.shape[0], 16384):
            x = X[s:s + 16384]
            err2 += float((x - U[s:s + 16384] @ W).double().square().sum())
            norm2 += float(x.double().square().sum())
        self.reconstruction_err_ = math.sqrt(err2 / norm2) if norm2 > 0 else 0.0
        self.eval_rows_ = int(X.shape[0])

    def transform(self, X):
        """Coefficients U >= 0 (n x r) of rows ``X`` with the bank fixed (exact NNLS)."""
        check_fitted(self)
        T, is_torch = as_tensor(self, X, reset=False, device=self.device_, nonnegative=not self.signed)
        return output(self._nnls(T), is_torch)

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def inverse_transform(self, U):
        check_fitted(self)
        is_torch = isinstance(U, torch.Tensor)
        T = U.detach().to(self.device_, torch.float32) if is_torch else torch.from_numpy(
            np.ascontiguousarray(U, dtype=np.float32)).to(self.device_)
        if T.ndim != 2 or T.shape[1] != self.components_.shape[0]:
            raise InputError(f"coefficients must have shape (n, {self.components_.shape[0]}), got {tuple(T.shape)}")
        return output(T @ self._bank(), is_torch)

    # ------------------------------------------------------------------ persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Nothing besides ``components_``: the NNLS transform needs only the bank."""
        check_fitted(self)
        return {}

    def load_state(self, components, state: dict, info: dict | None = None):
        self.components_ = np.asarray(components, dtype=np.float32)
        self.n_components_, self.n_features_in_ = self.components_.shape
        for key, value in (info or {}).items():
            setattr(self, key, value)
        self.__dict__.pop("_online_", None)
        self.__dict__.pop("_W_device_", None)
        return self


class MiniBatchSemiNMF(MiniBatchNMF):
    """Online Semi-NMF: ``U >= 0``, W signed (for signed activations, e.g. ViT tokens).

    The bank is the exact least-squares solution of the surrogate at each batch, ``W = (H + λI)^-1 Q`` (a tiny
    ridge λ keeps H invertible); initialised from k-means centroids of a sample (as the batch Semi-NMF).
    Parameters as :class:`MiniBatchNMF` (``init`` is unused: the start is always k-means).
    """

    method = "minibatch_semi_nmf"
    signed = True
    nonnegative_input = False

    def _init_bank(self, sample, gen):
        from .kmeans import kmeans_pp, lloyd

        r = int(self.n_components)
        if r > sample.shape[0]:
            return S.randn((r, sample.shape[1]), gen, sample) * float(sample.std().clamp_min(1e-6))
        C0 = kmeans_pp(sample, r, gen)
        C, _, _, _, _ = lloyd(sample, C0, 20, 1e-4)
        return C.contiguous()

    def _update_bank(self, st):
        H, Q = st["H"], st["Q"]
        r = H.shape[0]
        ridge = 1e-6 * float(torch.diagonal(H).mean().clamp_min(1e-30))
        eye = torch.eye(r, dtype=H.dtype, device=H.device)
        st["W"].copy_(torch.linalg.solve((H + ridge * eye).double(), Q.double()).to(H.dtype))
