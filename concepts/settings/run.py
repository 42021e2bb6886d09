"""The run configuration: every section together, as in a config file and ``RUN/config.yaml``.

A config file has the key ``out`` (the run folder) and the sections ``data``, ``model``, ``extract``, ``factorize``,
``importance``, ``fviz``, ``atlas``, ``export`` and ``executor``, each validated by its settings model. Every key is
optional. Overrides (``--set factorize.n_concepts=25``, the CLI's flags, a stage function's keywords) are applied to
the raw mapping before validation, so they are checked exactly like the file's values.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from ..errors import ConceptsError, SettingsError
from .atlas import AtlasSettings
from .base import Section, meta, settings_error, setting
from .data import DataSettings
from .executor import ExecutorSettings
from .export import ExportSettings
from .extract import ExtractSettings
from .factorize import FactorizeSettings
from .fviz import FvizSettings
from .importance import ImportanceSettings
from .label import LabelSettings
from .model import ModelSettings
from .probe import ProbeSettings


class RunConfig(BaseModel):
    """The whole configuration of a run: one frozen settings model per section."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    out: Union[str, None] = setting(None, "the run folder (RUN)", hashed=False)
    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    extract: ExtractSettings = Field(default_factory=ExtractSettings)
    factorize: FactorizeSettings = Field(default_factory=FactorizeSettings)
    importance: ImportanceSettings = Field(default_factory=ImportanceSettings)
    fviz: FvizSettings = Field(default_factory=FvizSettings)
    atlas: AtlasSettings = Field(default_factory=AtlasSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    label: LabelSettings = Field(default_factory=LabelSettings)

    @model_validator(mode="after")
    def _across_sections(self) -> "RunConfig":
        if self.model.layout == "tokens":
            from ..factorize.registry import METHODS, accepts_signed

            if not accepts_signed(self.factorize.method):
                signed = [m for m in METHODS if accepts_signed(m)]
                raise ValueError(f"factorize.method: {self.factorize.method} needs non-negative activations and "
                                 f"token layouts are signed; choose one of {', '.join(signed)}")
        return self

    # -- views
    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-able mapping (tuples become lists)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with dotted keys changed, validated: ``cfg.replace(**{"factorize.n_concepts": 5})``."""
        raw = self.to_dict()
        for key, value in changes.items():
            set_dotted(raw, key, value)
        return config_from_dict(raw)

    def save(self, path: str | os.PathLike) -> Path:
        from ..schema.runfiles import write_text_atomic

        return write_text_atomic(path, self.to_yaml())


SECTIONS: dict[str, type[Section]] = {name: field.annotation for name, field in RunConfig.model_fields.items()
                                      if isinstance(field.annotation, type) and issubclass(field.annotation, Section)}


# ----------------------------------------------------------------------------- loading
def config_from_dict(raw: Mapping[str, Any] | None) -> RunConfig:
    """Validate a raw mapping (as loaded from YAML) into a :class:`RunConfig`; one-line errors."""
    if raw is not None and not isinstance(raw, Mapping):
        raise SettingsError("config: expected a mapping of sections at the top level")
    try:
        return RunConfig(**dict(raw or {}))
    except ValidationError as exc:
        raise settings_error(exc, RunConfig) from None


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise SettingsError(f"bad override key {key!r}; use section.key=value, e.g. factorize.n_concepts=25")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SettingsError(f"cannot set {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``'factorize.n_concepts=25'`` -> ``('factorize.n_concepts', 25)`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise SettingsError(f"bad override {text!r}; use --set section.key=value")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConceptsError(f"config file {path} not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConceptsError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConceptsError(f"config file {path}: expected a mapping of sections at the top level")
    return loaded or {}


def load_config(path: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | Iterable[str] | None = None) -> RunConfig:
    """Read a YAML config (or start from the defaults when ``path`` is None) and apply overrides.

    ``overrides`` is a mapping of dotted keys to values (``{"factorize.n_concepts": 25}``) or a list of
    ``"key=value"`` strings. The result is validated; errors name the key and the allowed values.
    """
    raw = read_yaml(path) if path is not None else {}
    if overrides:
        items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
        for key, value in items:
            set_dotted(raw, key, value)
    return config_from_dict(raw)


# ----------------------------------------------------------------------------- what each stage takes
#: the settings each stage command and stage function takes: whole sections, or single dotted keys
STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "extract": ("out", "data", "model", "extract", "executor.threads"),
    "factorize": ("factorize", "data.classes", "model.layer", "model.device", "executor.threads"),
    "importance": ("importance", "data.classes", "model.layer", "model.device", "executor.threads"),
    "fviz": ("fviz", "data.classes", "model.layer", "model.device", "executor.threads"),
    "atlas": ("atlas", "data.classes", "model.layer"),
    "export": ("export", "data.classes", "model.layer"),
    "probe": ("probe", "data.classes", "model.device", "executor.threads"),
    "label": ("label", "data.classes", "model.device", "executor.threads"),
    "run": ("out", *SECTIONS),
}


def _field(key: str) -> FieldInfo:
    section, _, name = key.partition(".")
    if not name:
        return RunConfig.model_fields[section]
    return SECTIONS[section].model_fields[name]


def stage_fields(stage: str) -> list[tuple[str, FieldInfo]]:
    """``(dotted key, field)`` of every setting ``stage`` takes, in declaration order."""
    out = []
    for item in STAGE_SETTINGS[stage]:
        if item in SECTIONS:
            out += [(f"{item}.{name}", field) for name, field in SECTIONS[item].model_fields.items()]
        else:
            out.append((item, _field(item)))
    return out


def keyword(key: str, field: FieldInfo) -> str:
    """The Python keyword of a setting in a stage function."""
    return meta(field)["kwarg"] or key.rpartition(".")[2]


def keyword_map(stage: str) -> dict[str, str]:
    """Stage function keyword -> dotted key."""
    out: dict[str, str] = {}
    for key, field in stage_fields(stage):
        word = keyword(key, field)
        if word in out:
            raise RuntimeError(f"settings {out[word]} and {key} share the keyword {word!r} in stage {stage}")
        out[word] = key
    return out


def _nullable(field: FieldInfo) -> bool:
    import typing

    return type(None) in typing.get_args(field.annotation)


def stage_config(stage: str, config: RunConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> RunConfig:
    """The configuration a stage function runs with: ``config`` (default: the defaults) with its keywords applied.

    A keyword of ``None`` for a setting that cannot be null means "not given". An unknown keyword is a
    ConceptsError naming the accepted ones.
    """
    if config is None:
        config = RunConfig()
    elif not isinstance(config, RunConfig):
        config = config_from_dict(config)
    if not kwargs:
        return config
    words = keyword_map(stage)
    unknown = sorted(set(kwargs) - set(words))
    if unknown:
        raise ConceptsError(f"{stage}: unknown setting(s) {', '.join(unknown)}; accepted: {', '.join(words)}")
    changes = {}
    for word, value in kwargs.items():
        key = words[word]
        if value is None and not _nullable(_field(key)):
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        changes[key] = list(value) if isinstance(value, (tuple, set)) else value
    return config.replace(**changes) if changes else config
