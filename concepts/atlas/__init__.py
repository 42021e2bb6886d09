"""The atlas: a static website (``RUN/atlas/``) and PNG sheets that show, class by class, the
concepts a model uses, their importance, where they are in the images, and how they relate
across classes.

* :func:`build_atlas` - ``index.html`` + one page per class + pictures + sheets.
* :func:`write_sheets` - only the PNG sheets.
"""
from ..schema.classdata import ClassData, list_run_classes, load_class
from .sheets import write_sheets
from .site import build_atlas

__all__ = ["build_atlas", "write_sheets", "load_class", "list_run_classes", "ClassData"]
