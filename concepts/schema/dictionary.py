"""``RUN/dictionary/shared.h5``: one concept dictionary fitted on the rows of every class of a run (dataset scope).

Each class then has its usual ``RUN/concepts/<class>.h5``, holding its *view* of the dictionary: the atoms it uses
most (``state/atoms``, indices into the dictionary; ``components`` are those atoms), the coefficients of its rows on
them, and its coefficient mass on every atom (``state/mass``); its ``inputs`` record the dictionary's identity, so a
refitted dictionary makes every class view stale.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .hdf5 import atomic_artefact, identity, read_attrs, reading, write_attrs
from .spec import COMMON_ATTRIBUTES, FileSpec, Item

DICTIONARY = FileSpec(
    stage="dictionary",
    path="RUN/dictionary/shared.h5",
    summary="A dictionary shared by the classes of a run (`concepts factorize --scope dataset`).",
    datasets=(
        Item("components", "(K, D) float32", "the atoms (decoder rows of an SAE, the bank of NMF ...)"),
        Item("state/<name>", "array", "what rebuilds the estimator (encoder weights, biases, thresholds ...)",
             required=False),
        Item("history/<name>", "(steps,) float32", "training curves of streamed methods (loss, nmse, l0, dead)",
             required=False),
    ),
    attributes=COMMON_ATTRIBUTES + (
        Item("method", "str", "registry name of the concept method"),
        Item("params", "JSON", "the estimator's parameters"),
        Item("n_concepts", "int", "K, the dictionary size"),
        Item("seed", "int", "random seed"),
        Item("classes", "JSON", "the classes whose rows it was fitted on"),
        Item("n_rows", "int", "rows of those classes"),
        Item("fit", "str", "'stream' (every row, streamed in shuffled blocks) or 'sample' (a uniform sample)"),
        Item("n_fit_rows", "int", "rows seen by the fit"),
        Item("fit_rel_error", "float", "relative l2 error of the fit (its evaluation rows)"),
        Item("n_iter, converged, seconds, device", "", "as in a concepts file"),
        Item("model, weights, layer, ...", "", "the provenance attributes of the activations, copied"),
    ),
)


@dataclass
class DictionaryRecord:
    path: Path
    attrs: dict[str, Any]
    components: np.ndarray
    state: dict[str, np.ndarray] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        return identity(self.attrs)


def write_dictionary(path: str | os.PathLike, record: DictionaryRecord) -> Path:
    with atomic_artefact(path) as handle:
        handle.create_dataset("components", data=np.asarray(record.components, np.float32))
        state = handle.create_group("state")
        for name, value in record.state.items():
            state.create_dataset(name, data=np.asarray(value))
        history = handle.create_group("history")
        for name, value in record.history.items():
            history.create_dataset(name, data=np.asarray(value, np.float32))
        write_attrs(handle, record.attrs)
    return Path(path)


def read_dictionary(path: str | os.PathLike) -> DictionaryRecord:
    with reading(path, DICTIONARY) as handle:
        return DictionaryRecord(
            path=Path(path), attrs=read_attrs(handle),
            components=np.asarray(handle["components"][()], np.float32),
            state={k: v[()] for k, v in handle["state"].items()} if "state" in handle else {},
            history={k: v[()] for k, v in handle["history"].items()} if "history" in handle else {})
