"""The machinery shared by the settings models: one field declaration gives the type, default, range, help text,
CLI flag, Python keyword and whether the value enters the config hash.

A section (``data``, ``model``, ``extract`` ...) is a frozen pydantic model whose fields are declared with
:func:`setting`. Everything else is derived from those declarations: validation and its one-line errors
(:func:`settings_error`), the text that says what a field allows (:func:`describe`), the CLI flags
(:mod:`concepts.settings.cli`) and the hashed part of a section (:meth:`Section.hashed`).

Why pydantic: its validators give types, ranges and choices with the location of every bad value (the key path in
our messages), frozen models, and a JSON schema for free; the ~150 lines of hand-written coercion this replaces did
less. Only the message format is ours, so that a flag, a YAML key and a Python argument fail with the same text.
"""
from __future__ import annotations

import typing
from typing import Any, Callable, ClassVar, Iterable, Literal, Union

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from ..errors import SettingsError  # noqa: F401 (re-exported)

_NONE = type(None)
#: the message of a value our own validators refuse; the error then says what the field allows
BAD = "value not allowed"


def setting(default: Any = ..., help: str = "", *, flag: str | None = None, run_flag: str | None = None,
            kwarg: str | None = None, hashed: bool = True, stage_cli: bool = True,
            choices: Callable[[], Iterable[str]] | None = None, normalize: Callable[[str], str] | None = None,
            extra_flags: dict[str, Any] | None = None, allowed: str | None = None, metavar: str | None = None,
            split: bool = True,
            default_factory: Callable[[], Any] | None = None, **constraints: Any) -> Any:
    """Declare one setting.

    ``help``: one line for ``--help`` and the docs. ``flag``: the CLI flag of the stage command (default
    ``--name-with-dashes``); ``run_flag``: the flag of ``concepts run`` when it must differ (default: ``flag``);
    ``kwarg``: the keyword of the stage's Python function (default: the field name). ``hashed``: whether the value
    changes the artefact (it then enters the config hash); runtime settings (device, batch size, workers) do not.
    ``stage_cli``: shown by the stage command (else only by ``concepts run``). ``choices``: a callable giving the
    allowed names (a registry), checked after ``normalize``. ``extra_flags``: more flags that set a constant,
    e.g. ``{"--random-init": False}``. ``allowed``: the words that say what the
    field allows, when its type does not say it (a pattern). ``split``: a list setting given as one string is
    split at commas (off for free text such as shell lines). ``constraints``: pydantic's ``ge``, ``gt``, ``le``, ``lt``, ``min_length``.
    """
    declared = Declared({"flag": flag, "run_flag": run_flag, "kwarg": kwarg, "hashed": hashed,
                         "stage_cli": stage_cli, "extra_flags": dict(extra_flags or {}), "metavar": metavar,
                         "split": split, "choices": choices, "normalize": normalize, "allowed": allowed})
    if default_factory is not None:
        field = Field(default_factory=default_factory, description=help, **constraints)
    else:
        field = Field(default, description=help, **constraints)
    field.metadata.append(declared)  # pydantic keeps metadata it does not know and ignores it
    return field


class Declared(dict):
    """What :func:`setting` declares beyond pydantic's type and constraints (kept in the field's metadata)."""

    def __hash__(self) -> int:  # metadata items must be hashable for pydantic's schema cache
        return id(self)


_DEFAULTS = Declared({"flag": None, "run_flag": None, "kwarg": None, "hashed": True, "stage_cli": True,
                      "extra_flags": {}, "metavar": None, "split": True, "choices": None, "normalize": None,
                      "allowed": None})


def meta(field: FieldInfo) -> Declared:
    """The concepts-specific declarations of a field (see :func:`setting`)."""
    return next((item for item in field.metadata if isinstance(item, Declared)), _DEFAULTS)


# ----------------------------------------------------------------------------- describing what a field allows
def _bounds(metadata: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in metadata:
        for name in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            value = getattr(item, name, None)
            if value is not None and isinstance(item, (at.Ge, at.Gt, at.Le, at.Lt, at.MinLen, at.MaxLen)):
                out[name] = value
    return out


def _number(kind: str, bounds: dict[str, Any]) -> str:
    low = ("ge", bounds["ge"]) if "ge" in bounds else ("gt", bounds["gt"]) if "gt" in bounds else None
    high = ("le", bounds["le"]) if "le" in bounds else ("lt", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        if low[0] == "ge" and high[0] == "le":
            return f"{kind} from {low[1]} to {high[1]}"
        return f"{kind} in {'[' if low[0] == 'ge' else '('}{low[1]}, {high[1]}{']' if high[0] == 'le' else ')'}"
    if low:
        return f"{kind} {'>=' if low[0] == 'ge' else '>'} {low[1]}"
    if high:
        return f"{kind} {'<=' if high[0] == 'le' else '<'} {high[1]}"
    return kind


def describe_type(hint: Any, bounds: dict[str, Any] | None = None, choices: Iterable[str] | None = None) -> str:
    """What a value of type ``hint`` (with ``bounds`` and registry ``choices``) may be, in words."""
    bounds = bounds or {}
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(hint)
        inner = [m for item in extra for m in (item.metadata if isinstance(item, FieldInfo) else [item])]
        return describe_type(base, {**bounds, **_bounds(inner)}, choices)
    if hint is _NONE:
        return "null"
    if origin is Union:
        parts = [describe_type(a, bounds, choices) for a in typing.get_args(hint) if a is not _NONE]
        if _NONE in typing.get_args(hint):
            parts.append("null")
        return " or ".join(parts)
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        inner = describe_type(typing.get_args(hint)[0], {}, choices)
        what = "a non-empty list" if bounds.get("min_length") else "a list"
        return f"{what} of ({inner})"
    if hint is bool:
        return "true/false"
    if hint is int:
        return _number("an integer", bounds)
    if hint is float:
        return _number("a number", bounds)
    if hint is str:
        return " | ".join(choices) if choices is not None else "a string"
    if hint is dict or origin is dict:
        return "a mapping of keys to values"
    return getattr(hint, "__name__", str(hint))


def describe(field: FieldInfo) -> str:
    if meta(field)["allowed"]:
        return meta(field)["allowed"]
    choices = meta(field)["choices"]
    return describe_type(field.annotation, _bounds(field.metadata), list(choices()) if choices else None)


# ----------------------------------------------------------------------------- the section base class
def _is_number_type(hint: Any) -> bool:
    if typing.get_origin(hint) is Union:
        return any(_is_number_type(a) for a in typing.get_args(hint))
    return hint in (int, float)


def _is_sequence_type(hint: Any) -> bool:
    if typing.get_origin(hint) is Union:
        return any(_is_sequence_type(a) for a in typing.get_args(hint))
    return typing.get_origin(hint) in (tuple, list)


class Section(BaseModel):
    """A frozen group of settings: one section of the config file, one settings model per stage."""

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True, validate_default=True)

    #: the section's key in the config file (``extract``, ``factorize`` ...)
    section: ClassVar[str] = ""

    @field_validator("*", mode="before")
    @classmethod
    def _prepare(cls, value: Any, info) -> Any:
        """Before type checks: a bool is no number; a comma-separated string is a list."""
        field = cls.model_fields[info.field_name]
        hint = field.annotation
        if isinstance(value, bool) and _is_number_type(hint) and bool not in _leaves(hint):
            raise ValueError(BAD)
        if isinstance(value, str) and _is_sequence_type(hint):
            if not meta(field)["split"]:
                return [value]
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _choices(cls, value: Any, info) -> Any:
        field = cls.model_fields[info.field_name]
        declared = meta(field)
        if declared["choices"] is None or value is None:
            return value
        allowed = list(declared["choices"]())
        normalize = declared["normalize"] or (lambda v: v)

        def check(item: str) -> str:
            name = normalize(str(item))
            if name not in allowed:
                raise ValueError(BAD)
            return name

        if isinstance(value, tuple):
            return tuple(dict.fromkeys(check(v) for v in value))
        return check(value)

    # -- views
    def plain(self) -> dict[str, Any]:
        """A plain, YAML-able mapping (tuples become lists)."""
        return self.model_dump(mode="json")

    def hashed(self) -> dict[str, Any]:
        """The values that decide the content of this stage's artefacts (they enter the config hash)."""
        values = self.plain()
        return {name: values[name] for name, field in type(self).model_fields.items() if meta(field)["hashed"]}

    def replace(self, **changes: Any) -> "Section":
        return build_section(type(self), {**self.plain(), **changes}, self.section)


def _leaves(hint: Any) -> set:
    if typing.get_origin(hint) is Union:
        return set().union(*[_leaves(a) for a in typing.get_args(hint)])
    return {hint}


# ----------------------------------------------------------------------------- errors
def _field_at(model: type[BaseModel], loc: tuple) -> tuple[list[str], FieldInfo | None, type[BaseModel] | None]:
    """Walk a pydantic error location through nested sections: (key path, the field, the model that owns it)."""
    path: list[str] = []
    owner: type[BaseModel] | None = model
    field: FieldInfo | None = None
    for part in loc:
        if owner is None or not isinstance(part, str) or part not in owner.model_fields:
            break
        field = owner.model_fields[part]
        path.append(part)
        inner = field.annotation
        owner = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
        if owner is not None:
            field = None
    return path, field, owner


def settings_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> SettingsError:
    """One line for the first problem of a validation error: ``key.path: value is not allowed; expected ...``."""
    error = exc.errors()[0]
    loc = tuple(error.get("loc", ()))
    path, field, owner = _field_at(model, loc)
    key = prefix + ".".join(path)
    kind = error.get("type", "")
    value = error.get("input")
    if kind == "extra_forbidden":
        where = owner if owner is not None else model
        bad = ".".join([*path, str(loc[len(path)])]) if len(loc) > len(path) else key
        return SettingsError(f"unknown key {prefix}{bad}; allowed keys: {', '.join(where.model_fields)}")
    if kind == "value_error" and "Value error, " in error.get("msg", ""):
        detail = error["msg"].split("Value error, ", 1)[1]
        if field is not None and detail == BAD:
            return SettingsError(f"{key}: {value!r} is not allowed; expected {describe(field)}")
        return SettingsError(f"{key}: {detail}" if key else detail)
    if field is None and owner is not None:  # a whole section of the wrong shape
        return SettingsError(f"{key}: expected a mapping of keys, got {value!r}")
    if field is None:
        return SettingsError(f"{key or 'settings'}: {error.get('msg', 'invalid value')}")
    return SettingsError(f"{key}: {value!r} is not allowed; expected {describe(field)}")


def build_section(cls: type[Section], raw: Any, prefix: str | None = None) -> Section:
    """Validate ``raw`` (a mapping) into the section ``cls``; errors are one :class:`SettingsError` line."""
    prefix = (cls.section if prefix is None else prefix) or ""
    prefix = f"{prefix}." if prefix else ""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(f"{prefix.rstrip('.')}: expected a mapping of keys, got {raw!r}")
    try:
        return cls(**raw)
    except ValidationError as exc:
        raise settings_error(exc, cls, prefix) from None
