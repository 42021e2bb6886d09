"""The HDF5 side of the artefact contract: the only module that opens artefacts with h5py.

* :func:`open_artefact` opens a stage file for reading and checks it: readable (not truncated), of the expected
  stage, of a format version this package reads, with the datasets its spec requires. Every failure is one
  :class:`~concepts.errors.ArtefactError` line that names the file and the fix.
* :func:`atomic_artefact` writes a stage file: to a temporary name unique to this process, renamed into place only
  when complete (so "the file exists" means "done"); a failure, including a full disk, removes the partial file.
* Attributes: dicts, lists and None are stored as JSON strings (:func:`write_attrs` / :func:`read_attrs`).

Format versions: 1 is what concepts 0.1 wrote (no ``format_version`` attribute); 2 adds ``format_version``,
``creation_id`` (a random id of this very file) and ``inputs`` (the identities of the files it was computed from).
Version 1 files are read as they are.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import h5py
import numpy as np

from .._version import __version__
from ..errors import ArtefactError, ConceptsError

if TYPE_CHECKING:
    from .spec import FileSpec

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


# ----------------------------------------------------------------------------- attributes
def write_attrs(node: h5py.HLObject, attrs: dict[str, Any]) -> None:
    """Write attributes; dicts/lists/None are stored as JSON strings."""
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)) or value is None:
            node.attrs[key] = json.dumps(value, default=str)
        elif isinstance(value, np.generic):
            node.attrs[key] = value.item()
        elif isinstance(value, Path):
            node.attrs[key] = str(value)
        else:
            node.attrs[key] = value


def _decoded(value: Any) -> Any:
    """One attribute as written by :func:`write_attrs`: bytes to str, JSON-encoded values parsed, NumPy scalars to
    Python ones."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{n" and value:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value.item() if isinstance(value, np.generic) else value


def read_attrs(node: h5py.HLObject) -> dict[str, Any]:
    """Read attributes back, decoding the JSON-encoded ones."""
    return {key: _decoded(value) for key, value in node.attrs.items()}


def string_dataset(group: h5py.Group, name: str, values: list[str]) -> None:
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype("utf-8"))


def read_strings(dataset: h5py.Dataset) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[()]]


def identity_attributes(stage: str) -> dict[str, Any]:
    """What every file this package writes carries: stage, format version, a fresh creation id, who and when."""
    return {
        "stage": stage,
        "format_version": FORMAT_VERSION,
        "creation_id": uuid.uuid4().hex,
        "package": "concepts",
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def identity(attrs: dict[str, Any]) -> str:
    """A file's identity for lineage: its creation id, or for a version 1 file its config hash and creation time."""
    found = attrs.get("creation_id")
    if found:
        return str(found)
    return f"v1:{attrs.get('config_hash', '')}:{attrs.get('created', '')}"


# ----------------------------------------------------------------------------- reading
def _rerun_hint(stage: str) -> str:
    return f"rerun `concepts {stage} --overwrite`" if stage in ("extract", "factorize", "importance", "fviz") else \
        f"rerun `concepts {stage}`"


def open_artefact(path: str | os.PathLike, spec: "FileSpec") -> h5py.File:
    """Open a stage file for reading after checking that it is one (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"{path} not found (run `concepts {spec.stage}` first)")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ArtefactError(f"{path} is damaged (truncated or not an HDF5 file: {str(exc).split(';')[0]}); "
                            f"delete it or {_rerun_hint(spec.stage)}") from None
    try:
        stage = handle.attrs.get("stage")
        stage = stage.decode() if isinstance(stage, bytes) else stage
        if stage != spec.stage:
            raise ArtefactError(f"{path} is not a {spec.stage} artefact (its stage attribute is {stage!r})")
        version = int(handle.attrs.get("format_version", 1))
        if version not in READABLE_VERSIONS:
            raise ArtefactError(f"{path} has artefact format version {version}; this concepts {__version__} reads "
                                f"versions {', '.join(map(str, READABLE_VERSIONS))}: upgrade the package")
        missing = [name for name in spec.required_datasets() if name not in handle]
        if missing:
            raise ArtefactError(f"{path} is incomplete (no {', '.join(missing)}); {_rerun_hint(spec.stage)}")
    except ArtefactError:
        handle.close()
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        handle.close()
        raise ArtefactError(f"{path} is damaged ({exc}); delete it or {_rerun_hint(spec.stage)}") from None
    return handle


@contextlib.contextmanager
def reading(path: str | os.PathLike, spec: "FileSpec") -> Iterator[h5py.File]:
    """``with reading(path, SPEC) as handle:`` — :func:`open_artefact`, closed on exit; a read error inside the block
    (a damaged chunk) becomes an ArtefactError naming the file."""
    handle = open_artefact(path, spec)
    try:
        yield handle
    except (OSError, KeyError) as exc:
        raise ArtefactError(f"{path} is damaged ({exc}); delete it or {_rerun_hint(spec.stage)}") from None
    finally:
        handle.close()


def peek_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of any HDF5 artefact (OSError when unreadable)."""
    with h5py.File(path, "r") as handle:
        return read_attrs(handle)


def peek_attr(path: str | os.PathLike, name: str, default: Any = None) -> Any:
    """One root attribute of an HDF5 artefact, decoded as :func:`read_attrs` does (OSError when unreadable);
    much cheaper than :func:`peek_attrs` on a file with many attributes."""
    with h5py.File(path, "r") as handle:
        return _decoded(handle.attrs[name]) if name in handle.attrs else default


# ----------------------------------------------------------------------------- writing
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temporary_name(path: Path) -> Path:
    """``<name>.<host>-<pid>-<random>.tmp``: unique to this process, so two writers never share a temporary file."""
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    return path.with_name(f"{path.name}.{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def remove_orphan_temporaries(path: Path) -> list[Path]:
    """Delete temporary files of ``path`` left by processes of this host that no longer run. Returns them."""
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    removed = []
    for tmp in path.parent.glob(f"{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 1:-len(".tmp")].split("-")
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    legacy = path.with_name(path.name + ".tmp")  # the single temporary name of concepts 0.1
    if legacy.exists():
        with contextlib.suppress(OSError):
            legacy.unlink()
            removed.append(legacy)
    return removed


def _no_space(exc: BaseException) -> bool:
    if isinstance(exc, ConceptsError):  # already said (e.g. the free-space check before writing)
        return False
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc).lower()
    return "no space left" in text or "errno = 28" in text or "errno 28" in text or "[errno 28]" in text


def _disk_full(path: Path) -> ConceptsError:
    return ConceptsError(f"no space left on device while writing {path}; freed the partial file (earlier files are "
                         "intact)")


def _discard(handle: h5py.File, tmp: Path, exc: BaseException | None) -> None:
    """Close and delete a temporary file after a failure. HDF5 crashes the process when an object of a file whose
    write failed for want of space is freed later, so the file is emptied first: its last writes then succeed."""
    if exc is not None and _no_space(exc):
        with contextlib.suppress(OSError):
            os.truncate(tmp, 0)
    with contextlib.suppress(Exception):
        handle.close()
    with contextlib.suppress(OSError):
        tmp.unlink()


def check_free_space(path: str | os.PathLike, needed_bytes: int) -> None:
    """Refuse to start a file that cannot fit: one line with what is needed and what is free."""
    import shutil

    path = Path(path)
    free = shutil.disk_usage(path.parent).free
    if needed_bytes > free:
        raise ConceptsError(f"no space left on device for {path}: it needs about {needed_bytes / 1e6:.1f} MB and "
                            f"{free / 1e6:.1f} MB are free; free some space or choose another run folder")


@contextlib.contextmanager
def atomic_artefact(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open a temporary file for writing and rename it to ``path`` only when the block finished without error.

    Any failure removes the temporary file and keeps an older ``path`` intact. A full disk is reported as one
    line ("no space left on device while writing ..."). Writers call ``handle.flush()`` after each large write,
    so that a full disk shows at once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_temporaries(path)
    tmp = temporary_name(path)
    handle = h5py.File(tmp, "w")
    try:
        yield handle
        handle.flush()
    except BaseException as exc:
        _discard(handle, tmp, exc)
        if _no_space(exc):
            raise _disk_full(path) from None
        raise
    try:
        handle.close()
    except Exception as exc:  # noqa: BLE001 - the last metadata writes
        _discard(handle, tmp, exc)
        if _no_space(exc):
            raise _disk_full(path) from None
        raise
    os.replace(tmp, path)


class ArtefactWriter:
    """Base of the stage writers: ``with Writer(path, ...) as w: ...; w.finish(...)``.

    Subclasses create their datasets in :meth:`_create` and call :meth:`_finished` at the end of ``finish``. The
    file appears at ``path`` only when ``finish`` ran and the block exited cleanly; otherwise nothing is left.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._context: Any = None
        self._done = False
        self.handle: h5py.File | None = None

    def _create(self) -> None:
        """Create the datasets (subclasses)."""

    def _finished(self) -> None:
        self._done = True

    def __enter__(self):
        self._context = atomic_artefact(self.path)
        self.handle = self._context.__enter__()
        try:
            self._create()
        except BaseException as exc:
            self._context.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is None and not self._done:
            error = RuntimeError(f"{type(self).__name__} for {self.path} closed without finish()")
            self._context.__exit__(RuntimeError, error, None)
            raise error
        return bool(self._context.__exit__(kind, value, traceback))
