"""Stage 1: extract activations of crops or feature-map positions, cached to HDF5 (one file per class).
Names are imported on first use."""
from .._lazy import lazy_attributes

_PUBLIC = {
    "ActivationCache": ".cache", "list_classes": ".cache", "open_activations": ".cache",
    "extract_run": ".stage", "extract_class": ".extractor", "MODES": ".sampling", "crop_boxes": ".sampling",
    "make_crops": ".sampling",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
