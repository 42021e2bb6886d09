"""Command-line flags made from the settings models: every setting a stage takes is a flag of its command, and
every setting is a flag of ``concepts run`` (the key it sets is shown in ``--help``).

Values are parsed by the settings models, not by argparse, so that a bad flag fails with the same one-line text as
a bad YAML key or a bad Python argument.
"""
from __future__ import annotations

import argparse
import typing
from typing import Any

from pydantic.fields import FieldInfo

from .base import describe, meta
from .run import STAGE_SETTINGS, parse_override, stage_fields

_NONE = type(None)


def _base(hint: Any) -> Any:
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not _NONE]
        return args[0] if len(args) == 1 else hint
    return hint


def flag_of(key: str, field: FieldInfo, stage: str) -> str:
    declared = meta(field)
    if stage == "run" and declared["run_flag"]:
        return declared["run_flag"]
    return declared["flag"] or "--" + key.rpartition(".")[2].replace("_", "-")


def _dest(key: str) -> str:
    return "setting__" + key.replace(".", "__")


def _default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = parse_override(text)
    return key.replace("-", "_"), value


def add_settings(parser: argparse.ArgumentParser, stage: str, *, skip: tuple[str, ...] = ()) -> None:
    """Add a flag for every setting ``stage`` takes (``run``: every setting), except the dotted keys in ``skip``."""
    group = parser.add_argument_group("settings" if stage != "run" else "settings (the config key in brackets)")
    for key, field in stage_fields(stage):
        declared = meta(field)
        if key in skip or (stage != "run" and not declared["stage_cli"]):
            continue
        flag = flag_of(key, field, stage)
        hint = _base(field.annotation)
        text = f"{field.description}; {describe(field)}, default {_default_text(field)}"
        if stage == "run":
            text += f" [{key}]"
        text = text.replace("%", "%%")
        dest = _dest(key)
        common = {"dest": dest, "default": argparse.SUPPRESS, "help": text}
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(hint) in (tuple, list):
            group.add_argument(flag, action="append", metavar=declared["metavar"] or "A,B", **common)
        elif hint is dict or typing.get_origin(hint) is dict:
            group.add_argument(flag, action="append", type=_key_value, metavar=declared["metavar"] or "KEY=VALUE",
                               **common)
        else:
            group.add_argument(flag, metavar=declared["metavar"] or flag.lstrip("-").replace("-", "_").upper(),
                               **common)
        for extra, value in declared["extra_flags"].items():
            group.add_argument(extra, dest=dest, action="store_const", const=value, default=argparse.SUPPRESS,
                               help=f"same as {flag if value else '--no-' + flag[2:]}")


def settings_overrides(args: argparse.Namespace, stage: str) -> dict[str, Any]:
    """The dotted settings the flags of ``stage`` set (only those given on the command line)."""
    out: dict[str, Any] = {}
    for key, field in stage_fields(stage):
        dest = _dest(key)
        if not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        hint = _base(field.annotation)
        if typing.get_origin(hint) in (tuple, list):
            items = []
            for part in value:
                items += [p.strip() for p in str(part).split(",") if p.strip()] if meta(field)["split"] else [part]
            value = items
        elif hint is dict or typing.get_origin(hint) is dict:
            value = dict(value)
        out[key] = value
    return out


def stage_names() -> tuple[str, ...]:
    return tuple(STAGE_SETTINGS)
