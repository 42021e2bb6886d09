"""``concepts run CONFIG.yaml [overrides]``: the whole pipeline for every selected class."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..settings.cli import add_settings, settings_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run extract -> factorize -> importance -> atlas -> export for every class",
        description=(
            "Run the whole pipeline from a YAML config (see configs/). Flags and --set override the config; "
            "the resolved config is saved as RUN/config.yaml. Finished classes and stages are skipped, so "
            "rerunning resumes an interrupted run."
        ),
    )
    parser.add_argument("config", nargs="?", help="YAML config (default: built-in defaults)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set factorize.params.max_iter=300 (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="redo every stage, replacing existing files")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_settings(parser, "run")
    parser.set_defaults(func=main)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides the flags ask for, as dotted keys (named flags win over --set)."""
    from ..settings import parse_override

    out: dict[str, Any] = dict(parse_override(text) for text in args.sets)
    out.update(settings_overrides(args, "run"))
    return out


def main(args: argparse.Namespace) -> int:
    from ..pipeline import run_pipeline
    from ..settings import load_config

    cfg = load_config(args.config, overrides_from_args(args))
    if args.print_config:
        sys.stdout.write(cfg.to_yaml())
        return 0
    from .common import prepare_downloads

    prepare_downloads(cfg)
    result = run_pipeline(cfg, overwrite=args.overwrite, progress=not args.quiet)
    if args.quiet:
        print(result.summary())
    return 0
