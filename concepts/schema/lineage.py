"""Whether an existing class file can be trusted: its settings (config hash) and its inputs (lineage).

A stage file records the config hash of the settings that made it and the identities of the files it was computed
from (``inputs``: stage -> creation id). Before a stage (re)writes or skips a class file, :func:`existing_status`
compares them with what the stage would now compute:

* ``todo``  : no file, or ``overwrite``;
* ``done``  : same settings, same inputs: nothing to do;
* ``stale`` : same settings but an input was recomputed since: recompute it (no ``--overwrite`` needed);
* a :class:`~concepts.errors.ConfigMismatchError` (other settings) or an
  :class:`~concepts.errors.ArtefactError` (unreadable file) unless ``overwrite``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtefactError, ConfigMismatchError
from .hdf5 import identity, peek_attrs


@dataclass(frozen=True)
class Wanted:
    """What a stage would write for a class: its settings, their hash, and the identities of its inputs."""

    config: dict[str, Any]
    config_hash: str
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)  # stage -> {creation_id, config_hash}

    def attributes(self) -> dict[str, Any]:
        return {"config": self.config, "config_hash": self.config_hash, "inputs": self.inputs}


def input_record(attrs: dict[str, Any]) -> dict[str, str]:
    """How a file is recorded as the input of another: its identity and config hash."""
    return {"creation_id": identity(attrs), "config_hash": str(attrs.get("config_hash", ""))}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def settings_diff(old: Any, new: dict[str, Any], limit: int = 4) -> str:
    """``'n_concepts 10 -> 3, method nmf -> pca'``: the settings that differ (old -> new)."""
    if not isinstance(old, dict):
        return "settings not recorded"
    a, b = _flatten(json.loads(json.dumps(old, default=str))), _flatten(json.loads(json.dumps(new, default=str)))
    changed = [f"{key} {a.get(key, '(none)')!s} -> {b.get(key, '(none)')!s}" for key in sorted(set(a) | set(b))
               if a.get(key) != b.get(key)]
    if not changed:
        return "same settings, other inputs"
    return ", ".join(changed[:limit]) + (f" (+{len(changed) - limit} more)" if len(changed) > limit else "")


def existing_status(path: str | os.PathLike, wanted: Wanted, overwrite: bool, stage: str) -> str:
    """``todo``, ``done`` or ``stale`` for the class file ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.exists() or overwrite:
        return "todo"
    try:
        attrs = peek_attrs(path)
    except OSError as exc:
        raise ArtefactError(f"{path} is damaged ({str(exc).split(';')[0]}); rerun `concepts {stage} --overwrite` "
                            "to recompute it") from None
    if attrs.get("config_hash") != wanted.config_hash:
        if int(attrs.get("format_version", 1)) < 2:
            raise ConfigMismatchError(f"{path} was written by concepts {attrs.get('package_version', '0.1')} "
                                      f"(artefact format 1), whose settings cannot be compared; pass --overwrite "
                                      f"to recompute it, or use a new run folder")
        diff = settings_diff(attrs.get("config"), wanted.config)
        raise ConfigMismatchError(f"{path} was made with other settings ({diff}); pass --overwrite to replace it, "
                                  "or use a new run folder")
    recorded = attrs.get("inputs") or {}
    for stage_name, record in wanted.inputs.items():
        if (recorded.get(stage_name) or {}).get("creation_id") != record.get("creation_id"):
            return "stale"
    return "done"


# ----------------------------------------------------------------------------- the chain of one class
#: what each stage file is computed from
UPSTREAM = {"extract": (), "factorize": ("extract",), "importance": ("extract", "factorize")}
#: the command that remakes each stage's file
COMMANDS = {"extract": "concepts extract IMAGES --out RUN", "factorize": "concepts factorize RUN",
            "importance": "concepts importance RUN"}


@dataclass
class ClassStatus:
    """Per stage: ``done``, ``stale`` (an input changed since it was made), ``damaged`` (unreadable) or
    ``missing``, with the reason of every status that is not ``done``."""

    class_id: str
    stages: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def first_problem(self, stages=("extract", "factorize", "importance"), allow_missing=()) -> str | None:
        """The first stage of ``stages`` that is not usable (missing allowed for ``allow_missing``)."""
        for stage in stages:
            state = self.stages.get(stage, "missing")
            if state == "done" or (state == "missing" and stage in allow_missing):
                continue
            return stage
        return None


def _from(attrs: dict[str, Any], source: dict[str, Any], stage: str) -> bool:
    """Whether a file (``attrs``) was computed from this ``source`` file (of ``stage``)."""
    recorded = (attrs.get("inputs") or {}).get(stage)
    if recorded:  # format 2: the creation id of the input it read
        return recorded.get("creation_id") == identity(source)
    # format 1 (concepts 0.1): only the input's config hash was recorded, and only for the stage just before
    if stage == {"factorize": "extract", "importance": "factorize"}.get(str(attrs.get("stage"))):
        return attrs.get("source_config_hash") in (None, source.get("config_hash"))
    return True


def class_status(files: dict[str, Path | None], class_id: str) -> ClassStatus:
    """The status of one class's stage files (``files``: stage -> path or None), reading their attributes only."""
    status = ClassStatus(class_id)
    attrs: dict[str, dict[str, Any]] = {}
    for stage in UPSTREAM:
        path = files.get(stage)
        if path is None or not Path(path).exists():
            status.stages[stage] = "missing"
            continue
        try:
            attrs[stage] = peek_attrs(path)
        except OSError as exc:
            status.stages[stage], status.reasons[stage] = "damaged", f"{path} is unreadable ({exc})"
            continue
        status.stages[stage] = "done"
        shared = (attrs[stage].get("inputs") or {}).get("dictionary")
        if shared:  # a dataset-scope view: made from the shared dictionary now on disk?
            current = files.get("dictionary")
            try:
                same = current is not None and identity(peek_attrs(current)) == shared.get("creation_id")
            except OSError:
                same = False
            if not same:
                status.stages[stage] = "stale"
                status.reasons[stage] = "the shared dictionary was refitted (or removed) since"
                continue
        for source in UPSTREAM[stage]:
            if status.stages.get(source) != "done":
                status.stages[stage] = "stale"
                status.reasons[stage] = f"its {source} file is {status.stages.get(source, 'missing')}"
                break
            if not _from(attrs[stage], attrs[source], source):
                status.stages[stage] = "stale"
                status.reasons[stage] = f"its {source} file was recomputed since"
                break
    return status


def stale_error(status: ClassStatus, stage: str, run: Path):
    """The one-line refusal for a class whose ``stage`` file cannot be trusted."""
    state = status.stages.get(stage, "missing")
    command = COMMANDS[stage].replace("RUN", str(run))
    why = status.reasons.get(stage, f"no {stage} file")
    fix = f"run `{command}`" if state != "damaged" else f"delete it or run `{command} --overwrite`"
    kind = ArtefactError
    return kind(f"class {status.class_id!r}: the {stage} file is {state} ({why}); {fix}")
