"""Argument helpers shared by the sub-commands."""
from __future__ import annotations

import argparse
from typing import Any


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="redo classes made with other settings")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def stage_settings(args: argparse.Namespace, stage: str, given: dict[str, Any] | None = None):
    """The run configuration of a stage command: the defaults, the positional values ``given`` (dotted keys), then
    the flags; validated like a config file (one-line errors)."""
    from ..settings import load_config
    from ..settings.cli import settings_overrides

    overrides = dict(given or {})
    overrides.update(settings_overrides(args, stage))
    return load_config(None, overrides)


def prepare_downloads(cfg=None) -> None:
    """Offline, let huggingface_hub fail at once instead of retrying for ~45 s, when timm may download weights:
    a named model without a checkpoint (``cfg``), or a stage that rebuilds the run's model (``cfg`` None)."""
    from ..runtime import hub_offline_if_unreachable

    if cfg is None or (cfg.model.name and not cfg.model.checkpoint and cfg.model.pretrained):
        hub_offline_if_unreachable()


def class_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def add_classes(parser: argparse.ArgumentParser) -> None:
    """``--classes`` of the commands that are not stages (evaluate)."""
    parser.add_argument("--classes", type=class_list, default=None, metavar="A,B,C",
                        help="comma-separated class ids to process (default: all)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present, else CPU)")
