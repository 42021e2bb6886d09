"""Independent component analysis: a wrapper of scikit-learn's FastICA (which does the job well).

``A ~ mean + U W``: the bank ``components_`` (r x D) is FastICA's mixing matrix transposed, the
coefficients are the independent sources ``U = (A - mean) unmixing_^T``.  Whitening uses the
eigen-decomposition of the covariance (``whiten_solver='eigh'``, fast when rows >> channels).  The
fit runs on the CPU in float64 (scikit-learn); ``transform``/``inverse_transform`` run on ``device``.
"""
from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from threadpoolctl import threadpool_limits

from ..errors import DataError
from .base import ConceptExtractor


class ICA(ConceptExtractor):
    """FastICA concepts. Parameters: n_components (r), algorithm ('parallel' | 'deflation'),
    fun ('logcosh' | 'exp' | 'cube'), max_iter, tol, random_state, device.

    Fitted: ``components_`` (r x D, mixing), ``unmixing_`` (r x D), ``mean_`` (D,).
    """

    signed = True
    method = "ica"
    _min_rows = 2  # centred and whitened: n rows span at most n - 1 directions
    _parameter_constraints = {
        **ConceptExtractor._parameter_constraints,
        "algorithm": [StrOptions({"parallel", "deflation"})],
        "fun": [StrOptions({"logcosh", "exp", "cube"}), callable],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }
    _per_concept_signed = ("unmixing_",)
    _state = ("unmixing_", "mean_")

    def __init__(self, n_components=10, *, algorithm="parallel", fun="logcosh", max_iter=200, tol=1e-4,
                 random_state=None, device=None):
        self.n_components = n_components
        self.algorithm = algorithm
        self.fun = fun
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device

    def _max_rank(self, n, d):
        return min(n - 1, d)

    def _fit(self, X, gen):
        seed = int(torch.randint(2 ** 31 - 1, (1,), generator=gen))
        ica = FastICA(n_components=int(self.n_components), algorithm=self.algorithm, fun=self.fun,
                      whiten="unit-variance", whiten_solver="eigh", max_iter=int(self.max_iter),
                      tol=float(self.tol), random_state=seed)
        data = X.detach().cpu().numpy().astype(np.float64)
        if not np.ptp(data, axis=0).any():
            raise DataError("ica: the rows are all equal (constant activations): there are no directions to "
                            "separate")
        # BLAS follows torch's thread setting (concepts.runtime.threads_for / thread_limit), as the torch methods do
        with threadpool_limits(torch.get_num_threads()), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            warnings.filterwarnings("ignore", message="There are some small singular values")
            S = ica.fit_transform(data)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        if not (np.isfinite(S).all() and np.isfinite(ica.mixing_).all()):
            raise DataError(f"ica: the centred rows span fewer than {self.n_components} directions; ask for fewer "
                            "concepts")
        self.unmixing_ = ica.components_.astype(np.float32)
        self.mean_ = ica.mean_.astype(np.float32)
        W = torch.as_tensor(ica.mixing_.T, dtype=torch.float32, device=X.device).contiguous()
        U = torch.as_tensor(S, dtype=torch.float32, device=X.device)
        return W, U, {"n_iter": int(ica.n_iter_), "converged": converged}

    def _t(self, name, like):
        return torch.as_tensor(np.asarray(getattr(self, name)), dtype=like.dtype, device=like.device)

    def _transform(self, X):
        return (X - self._t("mean_", X)) @ self._t("unmixing_", X).T

    def _inverse(self, U):
        return U @ self._W_of(U) + self._t("mean_", U)
