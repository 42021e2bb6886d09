"""``concepts importance RUN``: stage 3, concept importance, maps and fidelity per class."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import add_common, prepare_downloads, stage_settings


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "importance",
        help="estimate concept importance (Sobol, gradient x input, occlusion), maps and fidelity",
        description="Stage 3: for every class with concepts, write RUN/importance/<class>.h5 with per-image and "
        "class-level importances, concept maps and fidelity metrics. Finished classes are skipped on a rerun.",
    )
    parser.add_argument("run", metavar="RUN", help="run folder (with activations/ and concepts/)")
    add_settings(parser, "importance")
    add_common(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..importance import importance_run

    cfg = stage_settings(args, "importance")
    prepare_downloads()
    report = importance_run(args.run, config=cfg, overwrite=args.overwrite, progress=not args.quiet)
    print(report.summary(f"{args.run}/importance"), file=sys.stderr)
    return 0
