"""The ``concepts`` command line: one module per sub-command.

Each module in this package defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returns an exit code or None).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .._version import __version__
from ..errors import ConceptsError

# The order is the order of `concepts --help`.
COMMANDS = ["run", "extract", "probe", "factorize", "importance", "label", "fviz", "atlas", "export", "info", "demo",
            "synth", "evaluate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concepts",
        description="Explain what a vision model has learned, one class at a time, in human-readable concepts.",
    )
    parser.add_argument("--version", action="version", version=f"concepts {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # sub-command not shipped in this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..runtime import passive_openmp_wait

    passive_openmp_wait()  # before torch is imported (the sub-commands import it): idle threads sleep, not spin
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from ..runtime import configure_process

    configure_process()  # the entry point's process-wide set-up (library calls never do it)
    try:
        code = args.func(args)
    except ConceptsError as exc:
        print(f"concepts: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the output was piped into a command that stopped reading (head): not an error
        return 0
    except KeyboardInterrupt:
        print("concepts: interrupted; finished classes are kept, rerun to resume", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
