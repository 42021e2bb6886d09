"""The run-level files: ``RUN/config.yaml``, ``RUN/pipeline/*.json``, and the folders swapped in whole
(``RUN/atlas/``, ``RUN/exports/`` with its ``manifest.json``)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import ArtefactError
from .hdf5 import temporary_name

EXPORT_FORMAT = "concepts-export"
EXPORT_FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON content of ``path``, or ``default`` when it is absent or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def replace_folder(work: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Swap a finished folder ``work`` into ``target`` (the old one is removed only once the new one is in place)."""
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


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """``folder/manifest.json`` of an export, with its format name and version."""
    body = {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, **manifest}
    path = Path(folder) / MANIFEST
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    return path


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an export folder, checked: an export of a version this package reads."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ArtefactError(f"{folder} is not an export folder (no {MANIFEST}); run `concepts export` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtefactError(f"{path} is damaged ({exc}); rerun `concepts export`") from None
    if manifest.get("format") != EXPORT_FORMAT:
        raise ArtefactError(f"{path} is not a concepts export manifest")
    if int(manifest.get("format_version", 0)) > EXPORT_FORMAT_VERSION:
        raise ArtefactError(f"{path} has format version {manifest['format_version']}; this concepts reads up to "
                            f"{EXPORT_FORMAT_VERSION}: upgrade the package")
    return manifest
