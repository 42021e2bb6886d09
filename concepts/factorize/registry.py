"""Concept extractors by name (overcomplete-style): ``METHODS`` and :func:`make_estimator`."""
from __future__ import annotations

from ..errors import ConceptsError
from .dictionary import DictionaryLearning
from .ica import ICA
from .kmeans import KMeans
from .minibatch_nmf import MiniBatchNMF, MiniBatchSemiNMF
from .nmf import NMF
from .pca import PCA
from .sae import ArchetypalSAE, BatchTopKSAE, JumpReLUSAE, MatryoshkaSAE, ReLUSAE, TopKSAE
from .semi_nmf import SemiNMF

METHODS = {
    "nmf": NMF,
    "semi_nmf": SemiNMF,
    "pca": PCA,
    "ica": ICA,
    "kmeans": KMeans,
    "dictionary": DictionaryLearning,
    "relu_sae": ReLUSAE,
    "topk_sae": TopKSAE,
    "batchtopk_sae": BatchTopKSAE,
    "jumprelu_sae": JumpReLUSAE,
    "matryoshka_sae": MatryoshkaSAE,
    "archetypal_sae": ArchetypalSAE,
    "minibatch_nmf": MiniBatchNMF,
    "minibatch_semi_nmf": MiniBatchSemiNMF,
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
    naming the accepted ones.
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
    return cls(n_components=n_components, **params)
