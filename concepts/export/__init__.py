"""Exports of a run (``RUN/exports/``): importance tables (CSV / Parquet / JSON, through pandas), concept banks and
per-image importances (``.npz``), ``manifest.json`` with config, versions and provenance; and
:func:`load_export`, which reads them back exactly."""
from .._lazy import lazy_attributes

_PUBLIC = {"export_run": ".writer", "load_export": ".reader", "Export": ".reader", "COLUMNS": ".tables"}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
