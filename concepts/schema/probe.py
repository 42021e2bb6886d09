"""``RUN/probe/probe.npz``: a linear head (``concepts probe RUN``, or any file given as ``--head probe:FILE``).

A NumPy ``.npz`` (no pickles): ``weight`` (C, D), ``bias`` (C,), ``classes`` (C,) and, optionally, ``class_names``
and ``meta`` (a JSON string: how the probe was made and how well it does on held-out images).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ArtefactError
from .hashing import file_sha256
from .hdf5 import temporary_name
from .spec import FileSpec, Item

PROBE_FOLDER = "probe"
PROBE_FILE = "probe.npz"
PROBE_FORMAT = "concepts-linear-probe"

PROBE = FileSpec(
    stage="probe",
    path="RUN/probe/probe.npz",
    summary="A linear head on the pooled features the model's classifier would see (NumPy .npz, no pickles); "
            "after `concepts probe RUN` the run's importance stage explains its logits.",
    datasets=(
        Item("weight", "(C, D) float32", "one row per class, on the pooled features"),
        Item("bias", "(C,) float32", "logit offsets"),
        Item("classes", "(C,) str", "class ids (folder names), in logit order"),
        Item("class_names", "(C,) str", "readable names", required=False),
        Item("meta", "JSON str", "how it was made (below)", required=False),
    ),
    attributes=(
        Item("format", "str", f"'{PROBE_FORMAT}'"),
        Item("creation_id", "str", "random id of this probe, recorded by the importance files that use it"),
        Item("created, package_version", "str", "when and by which version"),
        Item("accuracy", "float", "top-1 accuracy on the held-out images (NaN when none could be held out)"),
        Item("n_train, n_test", "int", "images fitted on / held out"),
        Item("per_class", "JSON", "class -> n_train, n_test, accuracy"),
        Item("features", "str", "what the probe reads: the model's pooled pre-logit features at its cut"),
        Item("model", "JSON", "model, weights_sha256, layer, preprocessing of the backbone"),
        Item("settings", "JSON", "the `probe` settings"),
        Item("inputs", "JSON", "class -> creation_id of the activations file the features came from"),
    ),
    notes=("The attributes are the keys of `meta`. Any `.npz` with `weight`, `bias` and `classes` is a head for "
           "`--head probe:FILE`; its sha256 is recorded in the provenance of what it explains.",),
)


@dataclass
class ProbeFile:
    weight: np.ndarray
    bias: np.ndarray
    classes: list[str]
    class_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""

    @property
    def identity(self) -> str:
        return str(self.meta.get("creation_id") or self.sha256[:32])


def probe_path(run: str | os.PathLike) -> Path:
    return Path(run) / PROBE_FOLDER / PROBE_FILE


def new_probe_meta(**values: Any) -> dict[str, Any]:
    return {"format": PROBE_FORMAT, "creation_id": uuid.uuid4().hex, "package_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **values}


def write_probe(path: str | os.PathLike, probe: ProbeFile) -> Path:
    """Write a probe file atomically (a temporary name, renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path).with_suffix(".tmp.npz")
    try:
        np.savez(tmp, weight=np.asarray(probe.weight, np.float32), bias=np.asarray(probe.bias, np.float32),
                 classes=np.asarray(probe.classes, dtype=str), class_names=np.asarray(probe.class_names, dtype=str),
                 meta=np.asarray(json.dumps(probe.meta, default=str)))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_probe(path: str | os.PathLike) -> ProbeFile:
    """Read and check a probe file (weight (C, D), bias (C,), C class ids)."""
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"probe file not found: {path} (run `concepts probe RUN`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path} is not a readable .npz probe file ({exc})") from None
    missing = [k for k in ("weight", "bias", "classes") if k not in arrays]
    if missing:
        raise ArtefactError(f"{path} lacks {', '.join(missing)}; a probe file holds weight (C, D), bias (C,), "
                            "classes (C,)")
    weight, bias = np.asarray(arrays["weight"], np.float32), np.asarray(arrays["bias"], np.float32).reshape(-1)
    classes = [str(c) for c in np.asarray(arrays["classes"]).reshape(-1)]
    if weight.ndim != 2 or bias.shape != (weight.shape[0],) or len(classes) != weight.shape[0]:
        raise ArtefactError(f"{path}: weight {weight.shape}, bias {bias.shape} and {len(classes)} classes do not "
                            "agree (expected (C, D), (C,), C)")
    names = [str(c) for c in np.asarray(arrays.get("class_names", arrays["classes"])).reshape(-1)]
    meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
    return ProbeFile(weight, bias, classes, names if len(names) == len(classes) else classes, meta, path,
                     file_sha256(path))
