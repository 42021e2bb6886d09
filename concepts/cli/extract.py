"""`concepts extract IMAGES --out RUN`: stage 1."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import add_common, prepare_downloads, stage_settings


def register(sub) -> None:
    p = sub.add_parser("extract", help="cache activations of crops or feature-map positions per class (HDF5)",
                       description="Run images through the model up to a layer and cache the activations, "
                                   "one HDF5 file per class in RUN/activations/.")
    p.add_argument("images", help="a folder with one sub-folder per class, or a text file 'path label' per line")
    add_settings(p, "extract")
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..extract import extract_run

    cfg = stage_settings(args, "extract", {"data.images": args.images})
    prepare_downloads(cfg)
    report = extract_run(None, None, config=cfg, overwrite=args.overwrite, progress=not args.quiet)
    print(report.summary(f"{cfg.out}/activations"), file=sys.stderr)
    return 0
