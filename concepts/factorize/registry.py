"""Concept extractors by name (overcomplete-style): ``METHODS`` and :func:`make_estimator`.

The names are listed without importing the estimators (:class:`concepts.registry.Registry`), so that the settings
and ``--help`` know every method for free; ``METHODS[name]`` imports the class.
"""
from __future__ import annotations

from ..errors import ConceptsError
from ..registry import Registry

__all__ = ["METHODS", "canonical_method", "make_estimator", "accepts_signed"]

METHODS = Registry(
    "concept method",
    {
        "nmf": "concepts.factorize.nmf:NMF",
        "semi_nmf": "concepts.factorize.semi_nmf:SemiNMF",
        "pca": "concepts.factorize.pca:PCA",
        "ica": "concepts.factorize.ica:ICA",
        "kmeans": "concepts.factorize.kmeans:KMeans",
        "dictionary": "concepts.factorize.dictionary:DictionaryLearning",
        "relu_sae": "concepts.factorize.sae:ReLUSAE",
        "topk_sae": "concepts.factorize.sae:TopKSAE",
        "batchtopk_sae": "concepts.factorize.sae:BatchTopKSAE",
        "jumprelu_sae": "concepts.factorize.sae:JumpReLUSAE",
        "matryoshka_sae": "concepts.factorize.sae:MatryoshkaSAE",
        "archetypal_sae": "concepts.factorize.sae:ArchetypalSAE",
        "minibatch_nmf": "concepts.factorize.minibatch_nmf:MiniBatchNMF",
        "minibatch_semi_nmf": "concepts.factorize.minibatch_nmf:MiniBatchSemiNMF",
    },
    aliases={"seminmf": "semi_nmf", "semi-nmf": "semi_nmf", "k-means": "kmeans", "dict": "dictionary",
             "sparse": "dictionary", "dictionary-learning": "dictionary", "fastica": "ica", "topk": "topk_sae",
             "batchtopk": "batchtopk_sae", "jumprelu": "jumprelu_sae", "matryoshka": "matryoshka_sae",
             "archetypal": "archetypal_sae", "ra_sae": "archetypal_sae", "relu": "relu_sae",
             "mbnmf": "minibatch_nmf"},
)


def accepts_signed(name: str) -> bool:
    """Whether the method accepts signed activations (ViT tokens, residual streams); imports the class."""
    return not getattr(METHODS[name], "nonnegative_input", False)


def canonical_method(name: str) -> str:
    """The registry key for ``name`` (case and a few aliases accepted); ConceptsError if unknown."""
    return METHODS.canonical(name)


def make_estimator(name: str, n_components: int = 10, **params):
    """Build the estimator registered as ``name`` with ``n_components`` concepts.

    ``seed`` is accepted as an alias of ``random_state``.  Unknown parameters are a ConceptsError
    naming the accepted ones; values outside an estimator's ``_parameter_constraints`` are refused here,
    before any work, by :func:`validate_params` (one line: ``nmf: max_iter: -5 is not allowed; expected an
    int in the range [1, inf)``).
    """
    cls = METHODS[name]
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
    from .validation import validate_params

    estimator = cls(n_components=n_components, **params)
    validate_params(estimator, prefix=canonical_method(name))
    return estimator
