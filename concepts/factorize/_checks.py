"""Input and parameter checks of the streaming estimators (SAEs, mini-batch NMF), scikit-learn compatible.

The errors are :class:`~concepts.errors.ConceptsError` (one line on the command line) *and* the exception type
scikit-learn's conventions expect (``ValueError`` for bad data, ``InvalidParameterError`` for bad parameters,
``NotFittedError`` before ``fit``), so that both the CLI and ``sklearn.utils.estimator_checks`` are satisfied.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.validation import validate_data

from ..errors import ConceptsError
from .validation import InvalidParameter, NotFitted  # noqa: F401 (NotFitted is raised here too)


class InputError(ConceptsError, ValueError):
    """Bad input data (NaN/inf, wrong shape, wrong number of channels, negative entries for NMF)."""


class InputTypeError(ConceptsError, TypeError):
    """Input of a type the estimator does not take (sparse matrices)."""


# one definition of the parameter and fitted-state errors for every estimator of the package
ParameterError = InvalidParameter


def validate_params(estimator) -> None:
    """scikit-learn's ``_parameter_constraints`` check, raising :class:`ParameterError`."""
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        raise ParameterError(str(exc)) from None


def check_fitted(estimator, attribute: str = "components_") -> None:
    if not hasattr(estimator, attribute):
        raise NotFitted(f"this {type(estimator).__name__} is not fitted yet; call fit(A) first")


def as_tensor(estimator, X, *, reset: bool, device: torch.device, nonnegative: bool = False,
              what: str = "activations") -> tuple[torch.Tensor, bool]:
    """Validate ``X`` (array-like or torch tensor) and return (float32 tensor on ``device``, input_was_torch).

    Arrays go through scikit-learn's ``validate_data`` (which sets or checks ``n_features_in_``); tensors are
    checked here with the same rules.  Messages keep scikit-learn's wording ("NaN", "inf", "features").
    """
    if isinstance(X, torch.Tensor):
        if X.ndim != 2:
            raise InputError(f"Expected a 2-D matrix of {what} (rows x channels), got shape {tuple(X.shape)}")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise InputError(f"{what} are empty (shape {tuple(X.shape)})")
        T = X.detach().to(device=device, dtype=torch.float32)
        if not bool(torch.isfinite(T).all()):
            raise InputError(f"{what} contain NaN or inf values")
        if reset:
            estimator.n_features_in_ = int(T.shape[1])
        elif T.shape[1] != getattr(estimator, "n_features_in_", T.shape[1]):
            raise InputError(f"X has {T.shape[1]} features, but {type(estimator).__name__} is expecting "
                             f"{estimator.n_features_in_} features as input")
        is_torch = True
    else:
        from scipy import sparse

        if sparse.issparse(X):
            raise InputTypeError(f"sparse input is not supported by {type(estimator).__name__}: pass a dense array "
                                 "(A.toarray())")
        try:
            arr = validate_data(estimator, X, reset=reset, dtype=[np.float32, np.float64], accept_sparse=False,
                                ensure_min_samples=1, ensure_min_features=1)
        except TypeError as exc:
            raise InputTypeError(str(exc)) from None
        except ValueError as exc:
            message = str(exc)
            if "NaN" in message or "infinity" in message:
                message = f"{what} contain NaN or inf values ({message})"
            raise InputError(message) from None
        T = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(device)
        is_torch = False
    if nonnegative:
        low = float(T.min())
        if low < 0:
            raise InputError(f"Negative values in data passed to {type(estimator).__name__} (smallest entry "
                             f"{low:.4g}); use a signed method (e.g. 'minibatch_semi_nmf') or a ReLU'd layer")
    return T, is_torch


def output(T: torch.Tensor, is_torch: bool):
    """A tensor result as the caller's type: the tensor itself, or a float32 NumPy array."""
    if is_torch:
        return T
    return T.detach().to("cpu", torch.float32).numpy()
