"""Inputs: class discovery, class labels, robust image decoding."""
from .discovery import ImageClass, discover
from .images import ImageFiles, load_image, to_rgb
from .labels import ClassLabel, read_labels_file, resolve_label

__all__ = ["ImageClass", "discover", "ImageFiles", "load_image", "to_rgb", "ClassLabel", "read_labels_file",
           "resolve_label"]
