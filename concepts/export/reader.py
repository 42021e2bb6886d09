"""Read an export folder back (:func:`load_export`): the tables as typed columns, the arrays per class id."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConceptsError
from ..schema import file_sha256, read_manifest
from ..settings import FORMATS
from .tables import COLUMNS, DTYPES, FLOAT_COLUMNS, _typed


@dataclass
class Export:
    """An export read back: the table as typed numpy columns, and the arrays per class id."""

    path: Path
    manifest: dict[str, Any]
    importances: dict[str, np.ndarray]
    classes: list[dict[str, Any]]
    images: dict[str, dict[str, Any]]  # class_id -> path, sha256, skipped, logit, image_index
    banks: dict[str, np.ndarray]  # class_id -> (r, D)
    per_image: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # class_id -> method -> (n, r)
    diagnostics: pd.DataFrame | None = None  # diagnostics.csv (None in exports written before it)
    top_crops: pd.DataFrame | None = None  # top_crops.csv

    @property
    def image_root(self) -> Path | None:
        """The folder every photo path of the tables is relative to (None in exports written before it)."""
        root = self.manifest.get("image_root")
        return Path(root) if root else None

    def image_path(self, class_id: str, image_index: int) -> Path:
        """The absolute path of photo ``image_index`` of a class (``image_root / path``)."""
        entry = self.images[class_id]
        where = int(np.flatnonzero(entry["image_index"] == image_index)[0])
        path = Path(entry["path"][where])
        return path if path.is_absolute() or self.image_root is None else self.image_root / path

    def share(self, class_id: str, method: str) -> np.ndarray:
        """(r,) importance shares of a class by ``method``, in bank order."""
        mask = (self.importances["class_id"] == class_id) & (self.importances["method"] == method)
        if "depth" in self.importances:  # the concepts of the bank, not their sub-concepts
            mask &= self.importances["depth"] == 0
        if not mask.any():
            raise KeyError(f"no importance for class {class_id!r} and method {method!r}")
        out = np.full(int(self.importances["concept"][mask].max()) + 1, np.nan, np.float32)
        out[self.importances["concept"][mask]] = self.importances["importance"][mask]
        return out

    def dataframe(self) -> pd.DataFrame:
        """The importances as a pandas DataFrame."""
        return pd.DataFrame(self.importances)


def _read_csv(path: Path) -> pd.DataFrame:
    floats = [k for k, v in DTYPES.items() if v == "float32"]
    return pd.read_csv(path, dtype={k: v for k, v in DTYPES.items()} | {"class_id": str, "class_name": str,
                                                                       "stem": str, "path": str, "sha256": str},
                       keep_default_na=False, na_values={c: [""] for c in floats})


def read_table(folder: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        table = _read_csv(folder / "importances.csv")
    elif fmt == "parquet":
        table = pd.read_parquet(folder / "importances.parquet")
    elif fmt == "json":
        with open(folder / "importances.json", encoding="utf-8") as handle:
            rows = json.load(handle)["rows"]
        table = pd.DataFrame(rows, columns=list(COLUMNS))
        for column in FLOAT_COLUMNS:
            table[column] = table[column].astype("float64").astype("float32")
    else:
        raise ConceptsError(f"unknown export format {fmt}; choose among {', '.join(FORMATS)}")
    return _typed(table, COLUMNS)


def load_export(path: str | os.PathLike, *, format: str | None = None, verify: bool = True) -> Export:
    """Read an export folder (or a run folder that has ``exports/``) back into arrays.

    ``format`` picks the table to read (default: the first of csv, parquet, json present). With ``verify`` the
    sha256 of every file is checked against ``manifest.json``.
    """
    folder = Path(path)
    if not (folder / "manifest.json").exists() and (folder / "exports" / "manifest.json").exists():
        folder = folder / "exports"
    manifest = read_manifest(folder)
    files = manifest.get("files", {})
    if verify:
        for name, entry in files.items():
            target = folder / name
            if not target.exists():
                raise ConceptsError(f"{target} listed in the manifest is missing")
            if entry.get("sha256") and file_sha256(target) != entry["sha256"]:
                raise ConceptsError(f"{target} does not match its sha256 in the manifest (modified?)")
    if format is None:
        format = next((f for f in FORMATS if f"importances.{f}" in files), None)
        if format is None:
            raise ConceptsError(f"{folder} has no importances table")
    table = read_table(folder, format)
    importances = {name: table[name].to_numpy() for name in table.columns}
    classes = _read_csv(folder / "classes.csv").to_dict(orient="records")
    for entry in classes:
        entry["methods"] = [m for m in str(entry["methods"]).split(";") if m and m != "nan"]
        entry.update({k: int(entry[k]) for k in ("class_index", "n_images", "n_images_listed", "n_concepts")})
    stem_to_id = {c["stem"]: c["class_id"] for c in classes}
    images: dict[str, dict[str, Any]] = {}
    for class_id, part in _read_csv(folder / "images.csv").groupby("class_id", sort=False):
        images[class_id] = {"path": part["path"].tolist(), "sha256": part["sha256"].tolist(),
                            "skipped": part["skipped"].to_numpy().astype(bool),
                            "logit": part["logit"].to_numpy(np.float32),
                            "image_index": part["image_index"].to_numpy(np.int64)}
    extra = {name: _read_csv(folder / f"{name}.csv") if (folder / f"{name}.csv").exists() else None
             for name in ("diagnostics", "top_crops")}
    with np.load(folder / "concept_banks.npz", allow_pickle=False) as handle:
        banks = {stem_to_id.get(key, key): handle[key] for key in handle.files}
    per_image: dict[str, dict[str, np.ndarray]] = {}
    with np.load(folder / "per_image_importances.npz", allow_pickle=False) as handle:
        for key in handle.files:
            stem, _, method = key.rpartition("/")
            per_image.setdefault(stem_to_id.get(stem, stem), {})[method] = handle[key]
    return Export(path=folder, manifest=manifest, importances=importances, classes=classes, images=images,
                  banks=banks, per_image=per_image, **extra)
