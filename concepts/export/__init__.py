"""Exports of a run (``RUN/exports/``): importance tables (CSV / Parquet / JSON), concept banks and
per-image importances (``.npz``), ``manifest.json`` with config, versions and provenance; and
:func:`load_export`, which reads them back exactly."""
from .tables import COLUMNS, FORMATS, Export, export_run, load_export

__all__ = ["export_run", "load_export", "Export", "COLUMNS", "FORMATS"]
