"""`concepts export RUN [--format csv|parquet|json]`: tables and arrays in RUN/exports/."""
from __future__ import annotations

import sys

from .common import add_classes


def _formats(text: str) -> list[str]:
    return [f.strip().lower() for f in text.split(",") if f.strip()]


def register(sub) -> None:
    p = sub.add_parser("export", help="export importances, concept banks and provenance (CSV/Parquet/JSON)",
                       description="Write RUN/exports/: importances.csv/.parquet/.json (one row per class, method "
                                   "and concept), classes.csv, images.csv, concept_banks.npz, "
                                   "per_image_importances.npz and manifest.json (config, versions, provenance).")
    p.add_argument("run", help="the run folder")
    p.add_argument("--format", dest="formats", action="append", type=_formats, default=None,
                   metavar="csv|parquet|json",
                   help="table format(s); repeat or comma-separate (default: csv,parquet,json; parquet needs "
                        "pyarrow)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/exports)")
    add_classes(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export import FORMATS, export_run

    formats = [f for group in args.formats for f in group] if args.formats else list(FORMATS)
    folder = export_run(args.run, formats, classes=args.classes, out=args.out, progress=not args.quiet)
    print(f"export: wrote {folder}", file=sys.stderr)
    return 0
