"""`concepts info RUN`: what a run holds."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="show the classes, rows, stages done, provenance and rankings of a run")
    p.add_argument("run", help="the run folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--layer", default=None, metavar="MODULE",
                   help="the cached layer to show (a several-layer run; default: its main layer)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..info import format_summary, run_summary

    summary = run_summary(args.run, layer=args.layer)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0
