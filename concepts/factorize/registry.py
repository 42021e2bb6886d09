"""Concept extractors by name (overcomplete-style): ``METHODS`` and :func:`make_estimator`."""
from __future__ import annotations

from ..errors import ConceptsError
from .dictionary import DictionaryLearning
from .ica import ICA
from .kmeans import KMeans
from .nmf import NMF
from .pca import PCA
from .semi_nmf import SemiNMF
from .validation import InvalidParameter, validate_params

__all__ = ["METHODS", "ALIASES", "canonical_method", "make_estimator", "validate_params", "InvalidParameter"]

METHODS = {
    "nmf": NMF,
    "semi_nmf": SemiNMF,
    "pca": PCA,
    "ica": ICA,
    "kmeans": KMeans,
    "dictionary": DictionaryLearning,
}

ALIASES = {"seminmf": "semi_nmf", "semi-nmf": "semi_nmf", "k-means": "kmeans", "dict": "dictionary",
           "sparse": "dictionary", "dictionary-learning": "dictionary", "fastica": "ica"}


def canonical_method(name: str) -> str:
    """The registry key for ``name`` (case and a few aliases accepted); ConceptsError if unknown."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in METHODS:
        raise ConceptsError(f"unknown concept method {name!r}; choose one of {', '.join(METHODS)}")
    return key


def make_estimator(name: str, n_components: int = 10, **params):
    """Build the estimator registered as ``name`` with ``n_components`` concepts.

    ``seed`` is accepted as an alias of ``random_state``.  Unknown parameters are a ConceptsError
    naming the accepted ones; values outside an estimator's ``_parameter_constraints`` are refused here,
    before any work, by :func:`validate_params` (one line: ``nmf: max_iter: -5 is not allowed; expected an
    int in the range [1, inf)``).
    """
    cls = METHODS[canonical_method(name)]
    if "seed" in params:
        seed = params.pop("seed")
        params.setdefault("random_state", seed)
    accepted = set(cls._get_param_names())
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConceptsError(
            f"method {canonical_method(name)!r} has no parameter {', '.join(unknown)}; "
            f"it accepts {', '.join(sorted(accepted - {'n_components'}))}"
        )
    estimator = cls(n_components=n_components, **params)
    validate_params(estimator, prefix=canonical_method(name))
    return estimator
