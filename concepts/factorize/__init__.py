"""Stage 2: concept dictionaries per class.

Estimators with the scikit-learn API (``fit``, ``transform``, ``inverse_transform``, ``components_``):
:class:`NMF` (HALS / multiplicative updates, the CRAFT method), :class:`SemiNMF` (signed activations),
:class:`PCA`, :class:`ICA` (scikit-learn's FastICA), :class:`KMeans` (centroids), and
:class:`DictionaryLearning` (sparse codes), all scikit-learn transformers.  ``METHODS`` maps names to
classes, ``make_estimator`` builds one by name (its parameters checked by ``validate_params``);
``factorize_run`` writes ``RUN/concepts/<class>.h5`` and ``load_concepts`` reads a fitted estimator back.
Quality measures (``match_atoms`` ...) are in :mod:`concepts.factorize.metrics`.
"""
from .base import ConceptExtractor
from .dictionary import DictionaryLearning
from .ica import ICA
from .kmeans import KMeans
from .metrics import dead_concepts, hoyer, match_atoms, relative_error, sparsity_l0
from .nmf import NMF
from .pca import PCA
from .registry import METHODS, canonical_method, make_estimator, validate_params
from .semi_nmf import SemiNMF
from .stage import factorize_class, factorize_run, load_concepts

__all__ = [
    "ConceptExtractor", "NMF", "SemiNMF", "PCA", "ICA", "KMeans", "DictionaryLearning",
    "METHODS", "make_estimator", "canonical_method", "validate_params",
    "factorize_run", "factorize_class", "load_concepts",
    "match_atoms", "relative_error", "sparsity_l0", "hoyer", "dead_concepts",
]
