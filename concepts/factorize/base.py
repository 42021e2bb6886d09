"""The shared estimator machinery of every concept extractor.

A concept extractor factorises a class's activations ``A`` (n rows x D channels) as ``A ~ U W`` (plus an
offset for centred methods): ``W = components_`` (r concepts x D channels) is the concept bank and
``U = transform(A)`` (n x r) the coefficients.  The API is scikit-learn's: ``__init__`` only stores
parameters, ``fit(A)`` returns ``self``, learned state ends in ``_``; every extractor is a real
scikit-learn transformer (``TransformerMixin``, ``_parameter_constraints`` checked in ``fit``, tags,
``NotFittedError`` before ``fit``, ``n_features_in_``, ``get_feature_names_out``) and passes
``sklearn.utils.estimator_checks`` (see ``tests/factorize/test_factorize_sklearn_checks.py``).
Errors are :class:`~concepts.errors.ConceptsError` (a ``ValueError``; parameter and fitted-state errors are
also scikit-learn's ``InvalidParameterError`` / ``NotFittedError``).

Inputs may be NumPy arrays (or anything ``check_array`` takes: lists, DataFrames, memmaps; not sparse
matrices) or torch tensors; outputs have the type of the input (NumPy float32, or a torch tensor on the
estimator's device).  Computation is float32 torch on ``device`` (None: CUDA when available) except where a
subclass wraps scikit-learn, so float64 input gives float32 output: the ``preserves_dtype`` tag says float32.

Concepts are put in a stable order after fitting: by total coefficient mass
``sum_i |U_ik| * ||W_k||`` (descending; the atom norm makes it independent of how the scale is split
between U and W), ties broken by index.  Signed methods also fix each atom's sign so that its largest
absolute entry is positive.  So the same data and seed give the same numbering.
"""
from __future__ import annotations

import time
from numbers import Integral

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval, InvalidParameterError
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ConceptsError, DataError
from ..runtime import pick_device, work_threads
from .validation import InvalidParameter, NotFitted


def make_generator(random_state) -> torch.Generator:
    """A CPU torch generator seeded from ``random_state`` (int, None: fresh entropy, a NumPy RandomState (one
    draw of it), or a torch Generator, used as is)."""
    if isinstance(random_state, torch.Generator):
        return random_state
    gen = torch.Generator(device="cpu")
    if random_state is None:
        gen.manual_seed(int(np.random.SeedSequence().generate_state(1)[0]))
    elif isinstance(random_state, np.random.RandomState):
        gen.manual_seed(int(random_state.randint(np.iinfo(np.int32).max)))
    else:
        gen.manual_seed(int(random_state))
    return gen


def randn(shape, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal draws made on the CPU (same numbers on every device), moved to ``like``'s device."""
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=like.device, dtype=like.dtype)


def rand(shape, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=torch.float32).to(device=like.device, dtype=like.dtype)


class DictionaryEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What every concept estimator (per-class methods, SAEs, mini-batch NMF) shares with scikit-learn: its tags
    (non-negative input when ``nonnegative_input``, dense, no NaN, float32 out), one output feature per concept, its
    device, and transient attributes (``_transient``) left out of pickles."""

    #: requires non-negative input
    nonnegative_input = False
    #: fitted attributes that are caches or optimiser state, not part of the fitted estimator
    _transient: tuple[str, ...] = ()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = bool(self.nonnegative_input)
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.requires_fit = True
        # computation is float32: float32 in gives float32 out; float64 in also gives float32 out
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    @property
    def _n_features_out(self) -> int:  # for get_feature_names_out: one output per concept
        return self.components_.shape[0]

    @property
    def device_(self) -> torch.device:
        return pick_device(getattr(self, "device", None))

    def __getstate__(self):
        state = dict(super().__getstate__())
        for name in self._transient:
            state.pop(name, None)
        return state


class ConceptExtractor(DictionaryEstimator):
    """Base class: validation, device handling, concept ordering, the sklearn-style public methods.

    Subclasses implement ``_fit(X, gen) -> (W, U, info)`` on a float32 tensor ``X`` and
    ``_transform(X) -> U``; they may override ``_inverse(U)``, ``_order_key(U, W)``, ``_max_rank(n, d)``,
    and list extra fitted tensors indexed by concept in ``_per_concept`` (permuted with the concepts)
    and extra fitted arrays to save in ``_state``.  Each declares ``_parameter_constraints`` for all of
    its ``__init__`` parameters (the shared ones below plus its own).
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state", torch.Generator],
        "device": [None, str, torch.device],
    }

    #: True when atoms (and coefficients) may be negative; fixes atom signs after fitting.
    signed = False
    #: names of fitted attributes with one entry per concept along axis 0 (permuted with the bank)
    _per_concept: tuple[str, ...] = ()
    #: the same, but also multiplied by the concept's sign when a signed method flips it
    _per_concept_signed: tuple[str, ...] = ()
    #: names of fitted attributes (besides components_) needed to rebuild the estimator from a file
    _state: tuple[str, ...] = ()
    overcomplete = False  # whether more concepts than rows or channels is a valid dictionary
    #: short method name, used in messages
    method = "base"
    #: fewest rows a fit needs (2 for methods that centre the data)
    _min_rows = 1

    # ------------------------------------------------------------------ scikit-learn protocol
    def _validate_params(self):
        """scikit-learn's check (called by ``fit``), its error also a one-line ConceptsError."""
        try:
            super()._validate_params()
        except InvalidParameterError as exc:
            if isinstance(exc, ConceptsError):
                raise
            raise InvalidParameter(str(exc)) from None

    def __getstate__(self):
        # the tensor cache of components_ may live on a GPU: rebuild it from components_ after unpickling
        state = dict(super().__getstate__())
        if "_W_cache" in state:
            state["_W_cache"] = None
        return state

    # ------------------------------------------------------------------ helpers
    def _check_input(self, A, what: str = "activations", *, reset: bool = False) -> tuple[torch.Tensor, bool]:
        """Return (float32 tensor on device, input_was_torch).

        ``reset`` (in ``fit``) records ``n_features_in_`` (and ``feature_names_in_`` for DataFrames); otherwise
        the number of channels must be the fitted one.  Torch tensors stay on the torch path; anything else goes
        through scikit-learn's ``validate_data`` (dense only, converted to C-contiguous float32).
        """
        is_torch = isinstance(A, torch.Tensor)
        if is_torch:
            X = A.detach().to(device=self.device_, dtype=torch.float32)
            if X.ndim != 2:
                raise ConceptsError(f"{what} must be a 2-D matrix (rows x channels), got shape {tuple(X.shape)}")
            if X.shape[0] == 0 or X.shape[1] == 0:
                raise ConceptsError(f"{what} are empty (shape {tuple(X.shape)})")
            if reset:
                self.n_features_in_ = int(X.shape[1])
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
        else:
            if sparse.issparse(A):
                raise ConceptsError(f"{what} are a sparse {type(A).__name__}: sparse input is not supported by "
                                    f"{self.method}; pass a dense array (e.g. A.toarray())")
            if not reset:
                self._check_channels(getattr(A, "shape", None))
            try:
                arr = validate_data(self, A, reset=reset, dtype=np.float32, order="C", accept_sparse=False,
                                    ensure_all_finite=False)
            except ValueError as exc:
                if isinstance(exc, ConceptsError):
                    raise
                raise ConceptsError(f"{what}: " + " ".join(str(exc).split())) from None
            if not arr.flags.writeable:  # torch.from_numpy needs a writable array (read-only memmaps)
                arr = arr.copy()
            X = torch.from_numpy(arr).to(self.device_)
        if not reset:
            self._check_channels(tuple(X.shape))
        if not bool(torch.isfinite(X).all()):
            raise ConceptsError(f"{what} contain NaN or inf values")
        if self.nonnegative_input:
            low = float(X.min())
            if low < 0:
                raise ConceptsError(
                    f"Negative values in data passed to {type(self).__name__}: {self.method} needs non-negative "
                    f"activations but the smallest entry is {low:.4g}; use Semi-NMF (method 'semi_nmf') for signed "
                    "activations (e.g. ViT tokens) or cut the model at a non-negative (ReLU'd) layer"
                )
        return X, is_torch

    def _check_channels(self, shape) -> None:
        if shape is None or len(shape) != 2:
            return
        d, fitted = int(shape[1]), int(self.n_features_in_)
        if d != fitted:
            raise ConceptsError(
                f"activations have {d} channels but the concept bank was fitted on {fitted} "
                f"(X has {d} features, but {type(self).__name__} is expecting {fitted} features as input)"
            )

    def _out(self, T: torch.Tensor, is_torch: bool):
        if is_torch:
            return T
        return T.detach().to("cpu", torch.float32).numpy()

    def _max_rank(self, n: int, d: int) -> int:
        return min(n, d)

    def _check_rank(self, n: int, d: int) -> int:
        r = int(self.n_components)
        if r < 1:
            raise ConceptsError(f"the number of concepts must be at least 1, got {r}")
        if n < self._min_rows:
            raise DataError(f"{self.method} needs at least {self._min_rows} rows to centre the data, "
                            f"got n_samples={n}")
        limit = self._max_rank(n, d)
        if r > limit:
            raise DataError(
                f"{self.method} cannot find {r} concepts in {n} rows x {d} channels (at most {limit}); "
                "ask for fewer concepts or give more rows"
            )
        return r

    def _check_fitted(self) -> None:
        try:
            check_is_fitted(self, "components_")
        except NotFittedError:
            raise NotFitted(f"this {type(self).__name__} is not fitted yet; call fit(A) first") from None

    @property
    def _W(self) -> torch.Tensor:
        """components_ as a float32 tensor on the device (cached)."""
        cache = getattr(self, "_W_cache", None)
        if cache is None or cache.device != self.device_:
            cache = torch.from_numpy(np.ascontiguousarray(self.components_, dtype=np.float32)).to(self.device_)
            self._W_cache = cache
        return cache

    def _tensor_state(self, name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(getattr(self, name), dtype=np.float32)).to(self.device_)

    # ------------------------------------------------------------------ ordering
    def _order_key(self, U: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """Total coefficient mass of each concept, measured against unit-norm atoms."""
        return U.abs().sum(dim=0).double() * torch.linalg.vector_norm(W.double(), dim=1)

    def _canonicalise(self, W: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fix signs (signed methods) and order the concepts by decreasing key; permute extra state too."""
        r = W.shape[0]
        signs = torch.ones(r, dtype=W.dtype, device=W.device)
        if self.signed:
            idx = W.abs().argmax(dim=1)
            signs = torch.sign(W[torch.arange(r, device=W.device), idx])
            signs[signs == 0] = 1
            W = W * signs[:, None]
            U = U * signs[None, :]
        key = self._order_key(U, W).cpu().numpy()
        order = np.argsort(-key, kind="stable")
        perm = torch.as_tensor(order, device=W.device)
        W, U = W[perm].contiguous(), U[:, perm].contiguous()
        signs_np = signs.cpu().numpy()[order]
        for name in self._per_concept:
            setattr(self, name, np.asarray(getattr(self, name))[order])
        for name in self._per_concept_signed:
            value = np.asarray(getattr(self, name))[order]
            shape = (-1,) + (1,) * (value.ndim - 1)
            setattr(self, name, value * signs_np.reshape(shape).astype(value.dtype))
        return W, U

    # ------------------------------------------------------------------ public API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, A, y=None):
        """Learn the concept bank ``components_`` (r x D) from activations ``A`` (n x D). Returns self."""
        self._fit_transform(A)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, A, y=None):
        """Fit and return the coefficients U (n x r) of the training rows."""
        U, is_torch = self._fit_transform(A)
        return self._out(U, is_torch)

    def _fit_transform(self, A):
        X, is_torch = self._check_input(A, reset=True)
        n, d = X.shape
        self._check_rank(n, d)
        with work_threads(_work(X, self.n_components)):
            return self._fit_transform_checked(X, is_torch)

    def _fit_transform_checked(self, X, is_torch):
        n, d = X.shape
        gen = make_generator(self.random_state)
        start = time.perf_counter()
        W, U, info = self._fit(X, gen)
        if X.device.type == "cuda":
            torch.cuda.synchronize(X.device)
        W, U = self._canonicalise(W, U)
        self.components_ = W.detach().to("cpu", torch.float32).numpy()
        self._W_cache = W.detach().float()
        self.n_components_ = W.shape[0]
        self.n_iter_ = int(info.get("n_iter", 0))
        self.converged_ = bool(info.get("converged", True))
        self.history_ = info.get("history", [])
        self.start_errors_ = list(info.get("start_errors", []))  # one relative error per start (multi-start fits)
        norm2 = err2 = 0.0
        for sl in chunks(n, 16384):
            # float64 accumulation: float32 norms of ~10^7 entries are off in the third digit
            norm2 += float(torch.linalg.vector_norm(X[sl], dtype=torch.float64)) ** 2
            err2 += float(torch.linalg.vector_norm(X[sl] - self._inverse(U[sl]), dtype=torch.float64)) ** 2
        self.reconstruction_err_ = (err2 / norm2) ** 0.5 if norm2 > 0 else 0.0
        self.seconds_ = time.perf_counter() - start
        return U, is_torch

    def transform(self, A):
        """Coefficients U (n x r) of rows ``A`` (n x D) with the bank fixed."""
        self._check_fitted()
        X, is_torch = self._check_input(A)
        with work_threads(_work(X, self.components_.shape[0])):
            return self._out(self._transform(X), is_torch)

    def inverse_transform(self, U):
        """Reconstruction ``U W`` (+ offset for centred methods) of coefficients U (n x r)."""
        self._check_fitted()
        is_torch = isinstance(U, torch.Tensor)
        T = U.detach().to(self.device_, torch.float32) if is_torch else torch.from_numpy(
            np.ascontiguousarray(U, dtype=np.float32)).to(self.device_)
        if T.ndim != 2 or T.shape[1] != self.components_.shape[0]:
            raise ConceptsError(f"coefficients must have shape (n, {self.components_.shape[0]}), got {tuple(T.shape)}")
        return self._out(self._inverse(T), is_torch)

    def _inverse(self, U: torch.Tensor) -> torch.Tensor:
        return U @ self._W_of(U)

    def _W_of(self, U: torch.Tensor) -> torch.Tensor:
        W = getattr(self, "_W_cache", None)
        if W is None or W.device != U.device:
            W = self._W
        return W

    # ------------------------------------------------------------------ persistence helpers
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Fitted arrays besides ``components_`` needed by :meth:`from_state`."""
        return {name: np.asarray(getattr(self, name)) for name in self._state}

    def load_state(self, components: np.ndarray, state: dict[str, np.ndarray], info: dict | None = None):
        """Restore a fitted estimator from a saved bank and state arrays (inverse of :meth:`state_arrays`)."""
        self.components_ = np.asarray(components, dtype=np.float32)
        self._W_cache = None
        for name in self._state:
            value = state[name]
            setattr(self, name, value.item() if np.ndim(value) == 0 else np.asarray(value))
        self.n_components_, self.n_features_in_ = self.components_.shape
        for key, value in (info or {}).items():
            setattr(self, key, value)
        return self


def _work(X: torch.Tensor, r) -> float:
    """Multiply-adds of one product of a factorisation of ``X`` with ``r`` concepts (the thread policy's size):
    on a GPU the question does not arise (infinite)."""
    if X.device.type != "cpu":
        return float("inf")
    return float(X.shape[0]) * float(X.shape[1]) * float(r)


def chunks(n: int, size: int):
    """Yield ``slice`` objects covering range(n) in blocks of ``size``."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
