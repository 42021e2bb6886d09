"""The atlas: a static website (``RUN/atlas/``), figures for papers and PNG sheets that show, class by class,
how much of the class logit the concepts explain, the concepts by importance with their crops and maps, a page
per concept and per image, and how concepts relate within and across classes.

* :func:`build_atlas` - ``index.html`` + class, concept and image pages + pictures (+ figures, sheets).
* :func:`write_sheets` - only the PNG sheets; :func:`write_figures` - only the figures.

Modules, one job each: ``runindex`` (what a page knows of the other classes), ``alignment`` (concepts against
the head's class weights), ``classpage`` / ``imagepage`` (the views of a class), ``views`` (their data),
``pictures`` (photo and crop files, inline maps), ``charts`` / ``layout`` (geometry), ``render`` + ``templates/``
(HTML), ``figures`` (matplotlib), ``site`` (the build).
"""
from ..schema.classdata import ClassData, list_run_classes, load_class
from .sheets import write_figures, write_sheets
from .site import build_atlas

__all__ = ["build_atlas", "write_sheets", "write_figures", "load_class", "list_run_classes", "ClassData"]
