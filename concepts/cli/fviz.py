"""``concepts fviz RUN``: MACO feature visualisations of every concept and of the class logit, per class."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import add_common, prepare_downloads, stage_settings


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fviz",
        help="feature visualisations (MACO) of every concept and of the class logit",
        description="For every class with concepts, write RUN/fviz/<class>.h5: one image per concept that excites "
        "its direction at the cut layer, one for the class logit, their transparency maps and how much each "
        "excites its target. MACO (Fel et al. 2023): only the phase of the image's Fourier spectrum is optimised, "
        "its magnitude is fixed to that of the class's photos. Minutes per class on a CPU (see configs/demo.yaml "
        "for CPU settings). Finished classes are skipped on a rerun.",
    )
    parser.add_argument("run", metavar="RUN", help="run folder (with activations/ and concepts/)")
    add_settings(parser, "fviz")
    add_common(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..fviz import fviz_run

    cfg = stage_settings(args, "fviz")
    prepare_downloads()
    report = fviz_run(args.run, config=cfg, overwrite=args.overwrite, progress=not args.quiet)
    print(report.summary(f"{args.run}/fviz"), file=sys.stderr)
    return 0
