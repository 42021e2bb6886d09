"""Shared rules for the per-class HDF5 artefacts of every stage.

* A finished file is written to ``<name>.tmp`` and renamed into place, so that
  "the file exists" means "the stage is done for that class".
* Every file carries its provenance as attributes; ``config_hash`` identifies the
  settings that made it, and a rerun with other settings refuses unless told to
  overwrite.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from ._version import __version__
from .errors import ConceptsError, ConfigMismatchError

STAGE_DIRS = {"extract": "activations", "factorize": "concepts", "importance": "importance"}


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able settings dict (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def safe_filename(class_id: str) -> str:
    """A file-system safe, stable file stem for a class id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", class_id).strip("._") or "class"
    if stem != class_id:
        stem += "-" + hashlib.sha1(class_id.encode()).hexdigest()[:8]
    return stem


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def replace_folder(work: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Swap a finished folder ``work`` into ``target`` (the old one is removed only once the new one is in place)."""
    import shutil

    work, target = Path(work), Path(target)
    if target.exists():
        old = target.with_name(target.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(work, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, target)
    return target


def stage_path(run: str | os.PathLike, stage: str, class_id: str) -> Path:
    return Path(run) / STAGE_DIRS[stage] / f"{safe_filename(class_id)}.h5"


def class_files(run: str | os.PathLike, stage: str) -> dict[str, Path]:
    """Finished class files of ``stage`` in ``run``: class id (from the file's attributes) -> path, sorted by id.

    Unreadable files (a write interrupted before the rename never leaves one) are left out.
    """
    found: dict[str, Path] = {}
    for path in sorted((Path(run) / STAGE_DIRS[stage]).glob("*.h5")):
        try:
            with h5py.File(path, "r") as handle:
                value = handle.attrs.get("class_id", path.stem)
        except OSError:
            continue
        found[value.decode() if isinstance(value, bytes) else str(value)] = path
    return dict(sorted(found.items()))


def base_attributes() -> dict[str, Any]:
    return {
        "package": "concepts",
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_attrs(node: h5py.HLObject, attrs: dict[str, Any]) -> None:
    """Write attributes; dicts/lists/None are stored as JSON strings."""
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)) or value is None:
            node.attrs[key] = json.dumps(value, default=str)
        elif isinstance(value, (np.generic,)):
            node.attrs[key] = value.item()
        else:
            node.attrs[key] = value


def read_attrs(node: h5py.HLObject) -> dict[str, Any]:
    """Read attributes back, decoding the JSON-encoded ones."""
    out: dict[str, Any] = {}
    for key, value in node.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value[:1] in "[{n" and value not in ("",):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open ``path.tmp`` for writing and rename it to ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        with h5py.File(tmp, "w") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def existing_status(path: str | os.PathLike, wanted_hash: str, overwrite: bool) -> str:
    """Decide what to do with a class artefact that may already exist.

    Returns ``"todo"`` (absent, or present but ``overwrite``) or ``"done"`` (present with the
    same config hash).  Raises :class:`ConfigMismatchError` for a different config.
    """
    path = Path(path)
    if not path.exists():
        return "todo"
    if overwrite:
        return "todo"
    try:
        with h5py.File(path, "r") as handle:
            found = handle.attrs.get("config_hash")
    except OSError as exc:  # a damaged file: redo it
        raise ConceptsError(f"{path} is unreadable ({exc}); delete it or rerun with --overwrite") from exc
    if isinstance(found, bytes):
        found = found.decode()
    if found == wanted_hash:
        return "done"
    raise ConfigMismatchError(
        f"{path} was made with another configuration (config hash {found}, now {wanted_hash}); "
        "use a new run folder or pass --overwrite"
    )


def string_dataset(group: h5py.Group, name: str, values: list[str]) -> None:
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype("utf-8"))


def read_strings(dataset: h5py.Dataset) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[()]]
