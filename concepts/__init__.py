"""concepts: explain what a vision model has learned, one class at a time, in human-readable concepts."""
from ._version import __version__
from .errors import ConceptsError

__all__ = ["__version__", "ConceptsError"]
