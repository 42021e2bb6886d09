"""Stage 1: extract activations of crops or feature-map positions, cached to HDF5 (one file per class)."""
from .cache import ActivationCache, list_classes, open_activations
from .extractor import extract_class, extract_run
from .sampling import MODES, crop_boxes, make_crops

__all__ = ["ActivationCache", "list_classes", "open_activations", "extract_run", "extract_class", "MODES",
           "crop_boxes", "make_crops"]
