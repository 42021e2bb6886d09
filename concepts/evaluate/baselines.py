"""Reference 'methods' for the evaluation: a bank of random atoms.

:class:`RandomAtoms` draws its concepts at random (absolute Gaussian vectors, so non-negative
like NMF's) and only fits the coefficients: non-negative least squares with the bank fixed.
It is the floor every extraction method should clear on recovery and stability.
"""
from __future__ import annotations

from numbers import Integral

import torch
from sklearn.utils._param_validation import Interval

from ..factorize._solvers import nnls_transform
from ..factorize.base import ConceptExtractor, randn


class RandomAtoms(ConceptExtractor):
    """Random non-negative atoms ``|N(0, 1)|`` scaled to the data; U by non-negative least squares.

    ``fit`` ignores the data except for its scale and dimension: a different ``random_state``
    gives an unrelated bank.
    """

    method = "random"
    _parameter_constraints = {
        **ConceptExtractor._parameter_constraints,
        "nnls_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components: int = 10, *, random_state=None, nnls_iter: int = 50, device=None):
        self.n_components = n_components
        self.random_state = random_state
        self.nnls_iter = nnls_iter
        self.device = device

    def _fit(self, X: torch.Tensor, gen: torch.Generator):
        r = int(self.n_components)
        W = randn((r, X.shape[1]), gen, X).abs()
        W = W / torch.linalg.vector_norm(W, dim=1, keepdim=True) * torch.linalg.vector_norm(X, dim=1).mean()
        return W, self._nnls(X, W), {"n_iter": 0, "converged": True}

    def _nnls(self, X: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        return nnls_transform(X, W, 65536, self.nnls_iter, 1e-5)

    def _transform(self, X: torch.Tensor) -> torch.Tensor:
        return self._nnls(X, self._W_of(X))
