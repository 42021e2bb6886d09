"""``concepts probe RUN``: a linear probe for a head-free backbone (DINOv2, a CLIP tower), for the run's classes."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import add_common, prepare_downloads, stage_settings


def register(sub) -> None:
    p = sub.add_parser("probe", help="train a linear probe on the pooled features for the run's classes",
                       description="Fit a multinomial logistic regression on the pooled features the model's "
                                   "classifier would see (computed from RUN/activations), on part of each class's "
                                   "images; report its accuracy on the held-out rest and write "
                                   "RUN/probe/probe.npz. The run's later stages (importance, atlas, export) then "
                                   "explain the probe's logits without further flags.")
    p.add_argument("run", help="the run folder (with activations/ from `concepts extract`)")
    add_settings(p, "probe")
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..probe import probe_run

    cfg = stage_settings(args, "probe")
    prepare_downloads()
    report = probe_run(args.run, config=cfg, overwrite=args.overwrite, progress=not args.quiet)
    print(report.summary(), file=sys.stderr)
    return 0
