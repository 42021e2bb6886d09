"""Argument helpers shared by the sub-commands."""
from __future__ import annotations

import argparse


def class_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def add_classes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=class_list, default=None, metavar="A,B,C",
                        help="comma-separated class ids to process (default: all)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present, else CPU)")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="redo classes made with another configuration")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
