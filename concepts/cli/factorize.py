"""`concepts factorize RUN`: stage 2, a concept dictionary per class."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import add_common, stage_settings


def register(sub) -> None:
    p = sub.add_parser("factorize", help="learn a concept dictionary per class (NMF, Semi-NMF, PCA, ICA, ...)",
                       description="Factorise each class's cached activations A ~ U W and write "
                                   "RUN/concepts/<class>.h5: the concept bank W, the coefficients U of every "
                                   "cached row, the method's parameters and diagnostics.")
    p.add_argument("run", help="the run folder (with activations/ from `concepts extract`)")
    add_settings(p, "factorize")
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..factorize import factorize_run

    cfg = stage_settings(args, "factorize")
    report = factorize_run(args.run, config=cfg, overwrite=args.overwrite, progress=not args.quiet)
    print(report.summary(f"{args.run}/concepts"), file=sys.stderr)
    return 0
