"""`concepts export RUN [--format csv|parquet|json]`: tables and arrays in RUN/exports/."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import stage_settings


def register(sub) -> None:
    p = sub.add_parser("export", help="export importances, concept banks and provenance (CSV/Parquet/JSON)",
                       description="Write RUN/exports/: importances.csv/.parquet/.json (one row per class, method "
                                   "and concept), classes.csv, images.csv, concept_banks.npz, "
                                   "per_image_importances.npz and manifest.json (config, versions, provenance).")
    p.add_argument("run", help="the run folder")
    p.add_argument("--out", default=None, help="output folder (default: RUN/exports)")
    add_settings(p, "export")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export import export_run

    cfg = stage_settings(args, "export")
    folder = export_run(args.run, config=cfg, out=args.out, progress=not args.quiet)
    print(f"export: wrote {folder}", file=sys.stderr)
    return 0
