"""The run configuration: YAML -> frozen dataclasses, one per stage section.

A config file has the sections ``data``, ``model``, ``extract``, ``factorize``, ``importance``,
``atlas``, ``export``, ``executor`` and the key ``out`` (the run folder). Every key is optional
(the defaults are the dataclass defaults below); an unknown key, a value of the wrong type or
a value outside the allowed set raises :class:`~concepts.errors.ConceptsError` with one line that
names the key and what is allowed.

Overrides (``--set factorize.n_concepts=25`` or the CLI's named flags) are applied to the raw
mapping before validation, so they are checked exactly like the file's values.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Union

import yaml

from ..errors import ConceptsError

SIGNED_OK_METHODS = ("semi_nmf", "pca", "ica", "kmeans", "dictionary")
IMPORTANCE_METHODS = ("sobol", "gradient", "occlusion")
EXPORT_FORMATS = ("csv", "parquet", "json")


@dataclass(frozen=True)
class DataConfig:
    """Where the images are: ``images/<class>/*.jpg``, one folder per class."""

    images: Union[str, None] = None
    classes: Union[tuple[str, ...], None] = None  # None: every class folder under `images`
    max_images: Union[int, None] = None  # per class; None: all
    labels: Union[str, None] = None  # optional CSV/JSON mapping class folder -> logit index


@dataclass(frozen=True)
class ModelConfig:
    """The model and where it is cut (``f = h o g``)."""

    name: Union[str, None] = None  # timm name; None: the bundled EfficientNet-Lite0
    checkpoint: Union[str, None] = None
    layer: Union[str, None] = None  # None: the last feature map before pooling
    layout: Literal["auto", "spatial", "tokens"] = "auto"  # expected layout of the cut, checked at model load
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"


@dataclass(frozen=True)
class ExtractConfig:
    mode: Literal["crops", "patches"] = "crops"
    patch_size: int = 64
    batch_size: int = 32
    workers: Union[int, None] = None  # DataLoader workers; None: automatic
    dtype: Literal["float16", "float32"] = "float16"


@dataclass(frozen=True)
class FactorizeConfig:
    method: Literal["nmf", "semi_nmf", "pca", "ica", "kmeans", "dictionary"] = "nmf"
    n_concepts: int = 10
    seed: int = 0
    params: dict = field(default_factory=dict)  # extra keyword arguments of the method


@dataclass(frozen=True)
class ImportanceConfig:
    methods: tuple[Literal["sobol", "gradient", "occlusion"], ...] = IMPORTANCE_METHODS
    designs: int = 32
    params: dict = field(default_factory=dict)  # extra settings: estimator, seed, score, batch_size ...


@dataclass(frozen=True)
class AtlasConfig:
    enabled: bool = True
    top_k: Union[int, None] = None  # images per concept on the sheets; None: the atlas default


@dataclass(frozen=True)
class ExportConfig:
    enabled: bool = True
    formats: tuple[Literal["csv", "parquet", "json"], ...] = EXPORT_FORMATS


@dataclass(frozen=True)
class ExecutorConfig:
    """How classes are spread over processes or Slurm jobs."""

    kind: Literal["local", "slurm"] = "local"
    workers: Union[int, Literal["auto"]] = "auto"  # local: 'auto' = one process per visible GPU, else 1
    classes_per_task: int = 10  # classes handled by one task (the model loads once per task)
    threads: Union[int, None] = None  # torch threads per worker; None: torch's default
    # slurm only
    partition: Union[str, None] = None
    gpus_per_task: int = 0
    cpus_per_task: int = 2
    mem_gb: Union[float, None] = None
    timeout_min: int = 60
    array_parallelism: int = 64
    account: Union[str, None] = None
    qos: Union[str, None] = None
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load ..., source venv ...)
    python: Union[str, None] = None  # interpreter on the nodes; None: this one


@dataclass(frozen=True)
class RunConfig:
    out: Union[str, None] = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    factorize: FactorizeConfig = field(default_factory=FactorizeConfig)
    importance: ImportanceConfig = field(default_factory=ImportanceConfig)
    atlas: AtlasConfig = field(default_factory=AtlasConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-able mapping (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with dotted keys changed, validated: ``cfg.replace(**{"factorize.n_concepts": 5})``."""
        raw = self.to_dict()
        for key, value in changes.items():
            _set_dotted(raw, key, value)
        return config_from_dict(raw)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_yaml())
        os.replace(tmp, path)
        return path


# ----------------------------------------------------------------------------- validation
def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(hint))
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of ({_describe(typing.get_args(hint)[0])})"
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string", dict: "a mapping"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


class _Bad(Exception):
    pass


def _coerce(value: Any, hint: Any) -> Any:
    """Return ``value`` checked against the type ``hint`` (lists become tuples); raise _Bad."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        if value is None:
            return None
        raise _Bad
    if origin is Union:
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option)
            except _Bad:
                continue
        raise _Bad
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
        raise _Bad
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise _Bad
        inner = typing.get_args(hint)[0]
        return tuple(_coerce(v, inner) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Bad
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Bad
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Bad
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # class ids such as 0 or 1 in YAML
        raise _Bad
    if hint is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise _Bad
    raise _Bad


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConceptsError(f"config: {prefix.rstrip('.')}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            raise ConceptsError(
                f"config: unknown key {prefix}{key}; allowed keys: {', '.join(names)}"
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{prefix}{key}.")
            continue
        try:
            kwargs[key] = _coerce(value, hint)
        except _Bad:
            raise ConceptsError(
                f"config: {prefix}{key}: {value!r} is not allowed; expected {_describe(hint)}"
            ) from None
    return cls(**kwargs)


def _check_values(cfg: RunConfig) -> None:
    """Range and cross-field checks that types alone cannot express."""

    def positive(key: str, value: Any, allow_none: bool = False) -> None:
        if value is None and allow_none:
            return
        if value is None or value < 1:
            raise ConceptsError(f"config: {key}: {value!r} is not allowed; expected an integer >= 1")

    positive("data.max_images", cfg.data.max_images, allow_none=True)
    positive("extract.patch_size", cfg.extract.patch_size)
    positive("extract.batch_size", cfg.extract.batch_size)
    if cfg.extract.workers is not None and cfg.extract.workers < 0:
        raise ConceptsError(f"config: extract.workers: {cfg.extract.workers!r} is not allowed; expected an integer >= 0")
    positive("factorize.n_concepts", cfg.factorize.n_concepts)
    if cfg.factorize.seed < 0:
        raise ConceptsError(f"config: factorize.seed: {cfg.factorize.seed!r} is not allowed; expected an integer >= 0")
    positive("importance.designs", cfg.importance.designs)
    if not cfg.importance.methods:
        raise ConceptsError(f"config: importance.methods: empty; choose one or more of {', '.join(IMPORTANCE_METHODS)}")
    positive("atlas.top_k", cfg.atlas.top_k, allow_none=True)
    if cfg.export.enabled and not cfg.export.formats:
        raise ConceptsError(f"config: export.formats: empty; choose one or more of {', '.join(EXPORT_FORMATS)}")
    if cfg.executor.workers != "auto":
        positive("executor.workers", cfg.executor.workers)
    positive("executor.classes_per_task", cfg.executor.classes_per_task)
    positive("executor.threads", cfg.executor.threads, allow_none=True)
    positive("executor.cpus_per_task", cfg.executor.cpus_per_task)
    positive("executor.timeout_min", cfg.executor.timeout_min)
    positive("executor.array_parallelism", cfg.executor.array_parallelism)
    if cfg.executor.gpus_per_task < 0:
        raise ConceptsError(
            f"config: executor.gpus_per_task: {cfg.executor.gpus_per_task!r} is not allowed; expected an integer >= 0"
        )
    device = cfg.model.device
    if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConceptsError(f"config: model.device: {device!r} is not allowed; expected auto | cpu | cuda | cuda:N | mps")
    if cfg.data.classes is not None and len(set(cfg.data.classes)) != len(cfg.data.classes):
        raise ConceptsError("config: data.classes: a class is listed twice")
    if cfg.model.layout == "tokens" and cfg.factorize.method == "nmf":
        raise ConceptsError(
            "config: factorize.method: nmf needs non-negative activations and token layouts are signed; "
            f"choose one of {', '.join(SIGNED_OK_METHODS)}"
        )


def config_from_dict(raw: Mapping[str, Any] | None) -> RunConfig:
    """Validate a raw mapping (as loaded from YAML) into a :class:`RunConfig`."""
    cfg = _build(RunConfig, raw or {}, "")
    _check_values(cfg)
    return cfg


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConceptsError(f"config: bad override key {key!r}; use section.key=value, e.g. factorize.n_concepts=25")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConceptsError(f"config: cannot set {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``'factorize.n_concepts=25'`` -> ``('factorize.n_concepts', 25)`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConceptsError(f"config: bad override {text!r}; use --set section.key=value")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | list[str] | None = None,
) -> RunConfig:
    """Read a YAML config (or start from the defaults when ``path`` is None) and apply overrides.

    ``overrides`` is a mapping of dotted keys to values (``{"factorize.n_concepts": 25}``) or a list
    of ``"key=value"`` strings. The result is validated; errors name the key and allowed values.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConceptsError(f"config file {path} not found")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConceptsError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConceptsError(f"config file {path}: expected a mapping of sections at the top level")
        raw = loaded or {}
    if overrides:
        items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
        for key, value in items:
            _set_dotted(raw, key, value)
    return config_from_dict(raw)
