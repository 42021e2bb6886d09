"""Sparse autoencoders: dataset-wide concept dictionaries, trained by streaming the activation cache.

One module per family, all with the scikit-learn estimator API and this project's persistence protocol
(``state_arrays`` / ``load_state``): :class:`ReLUSAE` (ReLU + L1), :class:`TopKSAE`, :class:`BatchTopKSAE` (with a
saved inference threshold), :class:`JumpReLUSAE` (learned thresholds), :class:`MatryoshkaSAE` (nested prefixes) and
:class:`ArchetypalSAE` (RA-SAE: atoms within δ of the convex hull of k-means candidates).  The shared training
loop is :class:`~concepts.factorize.sae.base.SparseAutoencoder`.
"""
from .archetypal import ArchetypalSAE
from .base import SparseAutoencoder
from .jumprelu import JumpReLUSAE
from .matryoshka import MatryoshkaSAE
from .relu import ReLUSAE
from .topk import BatchTopKSAE, TopKSAE

__all__ = ["SparseAutoencoder", "ReLUSAE", "TopKSAE", "BatchTopKSAE", "JumpReLUSAE", "MatryoshkaSAE",
           "ArchetypalSAE"]
