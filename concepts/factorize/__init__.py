"""Stage 2: concept dictionaries per class.

Estimators with the scikit-learn API (``fit``, ``transform``, ``inverse_transform``, ``components_``):
:class:`NMF` (HALS / multiplicative updates, the CRAFT method), :class:`SemiNMF` (signed activations),
:class:`PCA`, :class:`ICA` (scikit-learn's FastICA), :class:`KMeans` (centroids), and
:class:`DictionaryLearning` (sparse codes), all scikit-learn transformers.  ``METHODS`` maps names to
classes, ``make_estimator`` builds one by name (its parameters checked by ``validate_params``); ``factorize_run`` writes ``RUN/concepts/<class>.h5`` and ``load_concepts`` reads a
fitted estimator back.  Quality measures (``match_atoms`` ...) are in :mod:`concepts.factorize.metrics`.
Names are imported on first use.
"""
from .._lazy import lazy_attributes

_PUBLIC = {
    "ConceptExtractor": ".base", "NMF": ".nmf", "SemiNMF": ".semi_nmf", "PCA": ".pca", "ICA": ".ica",
    "KMeans": ".kmeans", "DictionaryLearning": ".dictionary",
    "METHODS": ".registry", "make_estimator": ".registry", "canonical_method": ".registry",
    "validate_params": ".validation",
    "factorize_run": ".stage", "factorize_class": ".stage", "load_concepts": ".stage",
    "match_atoms": ".metrics", "relative_error": ".metrics", "sparsity_l0": ".metrics", "hoyer": ".metrics",
    "dead_concepts": ".metrics",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
