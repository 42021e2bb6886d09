"""Exports of a run (``RUN/exports/``): tables anyone can open, arrays anyone can reload.

Files written (all described again, with their sha256, in ``manifest.json``):

``importances.csv`` / ``.parquet`` / ``.json``
    One row per class, method and concept. Columns: see :data:`COLUMNS`. ``importance`` is the
    method's share of the class logit (sums to 1 over a class's concepts), ``importance_raw`` the
    method's raw class importance, ``rank`` 1 the most important concept by that method.
``classes.csv``
    One row per class: id, index, name, file stem, number of images and concepts, methods.
``images.csv``
    One row per listed photo of each class: ``image_index`` is the row of that class in the
    per-image arrays below.
``concept_banks.npz``
    ``np.load`` gives one float32 array (r, D) per class under the key ``<stem>``: the concept
    vectors in bank order (concept ``k`` is row ``k``).
``per_image_importances.npz``
    One float32 array (n_images, r) per class and method under the key ``<stem>/<method>``.
``manifest.json``
    The configuration, the package versions, the provenance of every input artefact (path,
    sha256, attributes) and the list of files written.

:func:`load_export` reads all of it back into exactly the arrays of the run.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .._version import __version__
from ..artefacts import file_sha256, replace_folder
from ..errors import ConceptsError

FORMAT_VERSION = 1
FORMATS = ("csv", "parquet", "json")

#: The columns of ``importances.*``, in order, with their meaning.
COLUMNS: dict[str, str] = {
    "class_id": "class identifier (folder name / WordNet id)",
    "class_index": "index of the class logit in the model output (-1 if unknown)",
    "class_name": "human-readable class name",
    "concept": "index of the concept in the class's concept bank (row of concept_banks.npz[stem])",
    "rank": "1 = most important concept of the class by this method",
    "importance": "share of the class logit explained by the concept (sums to 1 over the class's concepts)",
    "importance_raw": "raw class-level importance from the method (unnormalised)",
    "ci_low": "lower bound of the confidence interval of importance_raw (NaN if not computed)",
    "ci_high": "upper bound of the confidence interval of importance_raw (NaN if not computed)",
    "share_ci_low": "lower bound of the confidence interval of importance (NaN if not computed)",
    "share_ci_high": "upper bound of the confidence interval of importance (NaN if not computed)",
    "method": "importance method (sobol, gradient, occlusion)",
    "n_images": "number of usable (non-skipped) images of the class",
    "n_concepts": "number of concepts of the class",
    "factorization": "concept extraction method (nmf, semi_nmf, pca, ...)",
    "model": "model name",
    "layer": "layer where the model was cut",
    "stem": "file stem of the class's artefacts and key in the .npz files",
}
INT_COLUMNS = ("class_index", "concept", "rank", "n_images", "n_concepts")
FLOAT_COLUMNS = ("importance", "importance_raw", "ci_low", "ci_high", "share_ci_low", "share_ci_high")

IMAGE_COLUMNS = ("class_id", "stem", "image_index", "path", "sha256", "skipped", "logit")
CLASS_COLUMNS = ("class_id", "class_index", "class_name", "stem", "n_images", "n_images_listed", "n_concepts",
                 "factorization", "methods", "model", "layer")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _f32(value: float) -> str:
    """Shortest text that reads back to the same float32."""
    return str(np.float32(value))


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"concepts": __version__, "python": sys.version.split()[0],
                                  "platform": platform.platform()}
    for name in ("numpy", "h5py", "torch", "timm", "scikit-learn", "scipy", "Pillow", "pyarrow", "Jinja2",
                 "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _have_pyarrow() -> bool:
    import importlib

    try:
        importlib.import_module("pyarrow.parquet")
    except ImportError:
        return False
    return True


def _rows_for_class(data) -> list[dict[str, Any]]:
    rows = []
    for method in sorted(data.methods):
        imp = data.methods[method]
        share = np.asarray(imp.share, dtype=np.float32)
        order = np.argsort(-share.astype(np.float64), kind="stable")
        rank = np.empty(len(share), dtype=np.int64)
        rank[order] = np.arange(1, len(share) + 1)
        for k in range(len(share)):
            rows.append({
                "class_id": data.class_id, "class_index": int(data.class_index), "class_name": data.class_name,
                "concept": k, "rank": int(rank[k]), "importance": np.float32(share[k]),
                "importance_raw": np.float32(imp.class_importance[k]),
                "ci_low": np.float32(imp.ci_low[k]) if imp.ci_low is not None else np.float32("nan"),
                "ci_high": np.float32(imp.ci_high[k]) if imp.ci_high is not None else np.float32("nan"),
                "share_ci_low": (np.float32(imp.share_ci_low[k]) if imp.share_ci_low is not None
                                 else np.float32("nan")),
                "share_ci_high": (np.float32(imp.share_ci_high[k]) if imp.share_ci_high is not None
                                  else np.float32("nan")),
                "method": method, "n_images": int(data.n_images), "n_concepts": int(data.n_concepts),
                "factorization": str(data.concept_attrs.get("method", "")),
                "model": str(data.act_attrs.get("model", "")), "layer": str(data.act_attrs.get("layer", "")),
                "stem": data.stem,
            })
    return rows


def _write_csv(path: Path, columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> None:
    columns = list(columns)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_f32(row[c]) if isinstance(row[c], np.floating) else row[c] for c in columns])


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name in COLUMNS:
        values = [row[name] for row in rows]
        if name in INT_COLUMNS:
            arrays[name] = pa.array(np.asarray(values, dtype=np.int64), type=pa.int64())
        elif name in FLOAT_COLUMNS:
            arrays[name] = pa.array(np.asarray(values, dtype=np.float32), type=pa.float32())
        else:
            arrays[name] = pa.array([str(v) for v in values], type=pa.string())
    table = pa.table(arrays)
    table = table.replace_schema_metadata({"concepts.columns": json.dumps(COLUMNS)})
    pq.write_table(table, path)


def _write_json(path: Path, rows: list[dict[str, Any]]) -> None:
    records = []
    for row in rows:
        records.append({k: (None if isinstance(v, np.floating) and not np.isfinite(v)
                            else float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"columns": COLUMNS, "rows": records}, handle, indent=0, ensure_ascii=False)
        handle.write("\n")


def _readme() -> str:
    """The export's own documentation: the module docstring plus the column meanings."""
    doc = (__doc__ or "").strip()
    lines = ["# Exports of a concepts run", "", doc, "", "## Columns of importances.*", ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in COLUMNS.items()]
    lines += ["", "## Reload", "", "```python", "from concepts.export import load_export",
              "export = load_export('RUN/exports')   # checks every sha256 of manifest.json",
              "export.banks[class_id]               # (n_concepts, D) float32",
              "export.per_image[class_id][method]   # (n_images, n_concepts) float32",
              "export.share(class_id, 'sobol')      # (n_concepts,) shares in bank order",
              "export.dataframe()                   # the table (pandas)", "```",
              "", "Without the package: `numpy.load('concept_banks.npz')[stem]`, "
              "`numpy.load('per_image_importances.npz')[stem + '/' + method]`, any CSV/Parquet reader.", ""]
    return "\n".join(lines)


def _input_provenance(run: Path, data) -> dict[str, Any]:
    attrs = {"extract": data.act_attrs, "factorize": data.concept_attrs, "importance": data.importance_attrs}
    out = {}
    for stage, path in data.paths.items():
        if not path.exists():
            continue
        out[stage] = {"path": str(path.relative_to(run)), "sha256": file_sha256(path), "bytes": path.stat().st_size,
                      "attrs": _jsonable(attrs.get(stage, {}))}
    return out


def export_run(run: str | os.PathLike, formats: Iterable[str] = FORMATS, *, classes: Iterable[str] | None = None,
               out: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Write the exports of a run to ``RUN/exports`` (or ``out``) and return that folder.

    ``formats`` chooses the table formats among csv, parquet and json; Parquet is skipped with
    a warning when pyarrow is not installed. The concept banks, per-image importances,
    ``classes.csv``, ``images.csv`` and ``manifest.json`` are always written.
    """
    from ..atlas.data import list_run_classes, load_class
    from tqdm.auto import tqdm

    run = Path(run)
    if not run.is_dir():
        raise ConceptsError(f"run folder {run} does not exist")
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = list(dict.fromkeys(f.lower() for f in formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConceptsError(f"unknown export format(s) {', '.join(unknown)}; choose among {', '.join(FORMATS)}")
    skipped_formats = []
    if "parquet" in formats and not _have_pyarrow():
        warnings.warn("pyarrow is not installed: importances.parquet is not written "
                      "(pip install pyarrow)", stacklevel=2)
        formats.remove("parquet")
        skipped_formats.append("parquet")
    found = list_run_classes(run, classes=classes)
    if not found:
        raise ConceptsError(f"{run} has no class with both activations and concepts; nothing to export")

    target = Path(out) if out is not None else run / "exports"
    if target.exists() and any(target.iterdir()) and not (target / "manifest.json").exists():
        raise ConceptsError(f"{target} exists and is not an export folder; choose an empty or new folder")
    work = target.with_name(target.name + ".tmp")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    class_rows: list[dict[str, Any]] = []
    image_rows: list[dict[str, Any]] = []
    banks: dict[str, np.ndarray] = {}
    per_image: dict[str, np.ndarray] = {}
    manifest_classes = []
    try:
        for class_id, stem in tqdm(found, desc="export", unit="class", disable=not progress):
            data = load_class(run, stem, with_maps=False, with_coefficients=False)
            rows += _rows_for_class(data)
            banks[stem] = np.asarray(data.components, dtype=np.float32)
            for method, imp in sorted(data.methods.items()):
                if imp.per_image is not None:
                    per_image[f"{stem}/{method}"] = np.asarray(imp.per_image, dtype=np.float32)
            for i, path in enumerate(data.image_paths):
                image_rows.append({"class_id": data.class_id, "stem": stem, "image_index": i, "path": path,
                                   "sha256": data.image_sha256[i], "skipped": int(bool(data.skipped[i])),
                                   "logit": np.float32(data.logit[i])})
            class_rows.append({"class_id": data.class_id, "class_index": data.class_index,
                               "class_name": data.class_name, "stem": stem, "n_images": data.n_images,
                               "n_images_listed": len(data.image_paths), "n_concepts": data.n_concepts,
                               "factorization": str(data.concept_attrs.get("method", "")),
                               "methods": ";".join(sorted(data.methods)),
                               "model": str(data.act_attrs.get("model", "")),
                               "layer": str(data.act_attrs.get("layer", ""))})
            manifest_classes.append({"class_id": data.class_id, "class_name": data.class_name,
                                     "class_index": data.class_index, "stem": stem,
                                     "n_images": data.n_images, "n_concepts": data.n_concepts,
                                     "methods": sorted(data.methods),
                                     "inputs": _input_provenance(run, data)})

        files: dict[str, dict[str, Any]] = {}
        if "csv" in formats:
            _write_csv(work / "importances.csv", COLUMNS, rows)
            files["importances.csv"] = {"description": "importance of every concept, one row per class, "
                                                       "method and concept", "rows": len(rows)}
        if "parquet" in formats:
            _write_parquet(work / "importances.parquet", rows)
            files["importances.parquet"] = {"description": "the same table as Parquet", "rows": len(rows)}
        if "json" in formats:
            _write_json(work / "importances.json", rows)
            files["importances.json"] = {"description": "the same table as JSON {columns, rows}",
                                         "rows": len(rows)}
        _write_csv(work / "classes.csv", CLASS_COLUMNS, class_rows)
        files["classes.csv"] = {"description": "one row per class", "rows": len(class_rows)}
        _write_csv(work / "images.csv", IMAGE_COLUMNS, image_rows)
        files["images.csv"] = {"description": "every listed photo; image_index is the row in the per-image "
                                              "arrays of its class", "rows": len(image_rows)}
        np.savez(work / "concept_banks.npz", **banks)
        files["concept_banks.npz"] = {"description": "np.load(...)[stem] -> (n_concepts, D) float32 concept "
                                                     "vectors of the class, row k = concept k",
                                      "keys": sorted(banks)}
        np.savez(work / "per_image_importances.npz", **per_image)
        files["per_image_importances.npz"] = {"description": "np.load(...)[f'{stem}/{method}'] -> (n_images, "
                                                             "n_concepts) float32 per-image importance; row i "
                                                             "is image_index i of images.csv",
                                              "keys": sorted(per_image)}
        (work / "README.md").write_text(_readme(), encoding="utf-8")
        files["README.md"] = {"description": "what each file holds and how to reload it"}
        for name, entry in files.items():
            entry["sha256"] = file_sha256(work / name)
            entry["bytes"] = (work / name).stat().st_size
        config = None
        config_path = run / "config.yaml"
        if config_path.exists():
            import yaml

            try:
                config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                config = {"unreadable": str(exc)}
        manifest = {
            "format": "concepts-export", "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "run": str(run.resolve()), "config": _jsonable(config),
            "config_file": ({"path": "config.yaml", "sha256": file_sha256(config_path)} if config_path.exists()
                            else None),
            "versions": _versions(), "formats": formats, "formats_skipped": skipped_formats,
            "columns": COLUMNS, "files": files, "classes": manifest_classes,
        }
        with open(work / "manifest.json", "w", encoding="utf-8") as handle:
            json.dump(_jsonable(manifest), handle, indent=1, ensure_ascii=False)
            handle.write("\n")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return replace_folder(work, target)


# --------------------------------------------------------------------------------------------- reload
@dataclass
class Export:
    """An export read back: the table as typed numpy columns, and the arrays per class id."""

    path: Path
    manifest: dict[str, Any]
    importances: dict[str, np.ndarray]
    classes: list[dict[str, Any]]
    images: dict[str, dict[str, np.ndarray]]  # class_id -> path, sha256, skipped, logit
    banks: dict[str, np.ndarray]  # class_id -> (r, D)
    per_image: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # class_id -> method -> (n, r)

    def share(self, class_id: str, method: str) -> np.ndarray:
        """(r,) importance shares of a class by ``method``, in bank order."""
        mask = (self.importances["class_id"] == class_id) & (self.importances["method"] == method)
        if not mask.any():
            raise KeyError(f"no importance for class {class_id!r} and method {method!r}")
        out = np.full(int(self.importances["concept"][mask].max()) + 1, np.nan, np.float32)
        out[self.importances["concept"][mask]] = self.importances["importance"][mask]
        return out

    def dataframe(self):
        """The importances as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame({k: v for k, v in self.importances.items()})


def _typed(columns: dict[str, list]) -> dict[str, np.ndarray]:
    out = {}
    for name, values in columns.items():
        if name in INT_COLUMNS:
            out[name] = np.asarray([int(v) for v in values], dtype=np.int64)
        elif name in FLOAT_COLUMNS:
            out[name] = np.asarray([np.nan if v in (None, "") else float(v) for v in values],
                                   dtype=np.float64).astype(np.float32)
        else:
            out[name] = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
    return out


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def _read_table(folder: Path, fmt: str) -> dict[str, np.ndarray]:
    if fmt == "csv":
        header, body = _read_csv(folder / "importances.csv")
        return _typed({name: [row[i] for row in body] for i, name in enumerate(header)})
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(folder / "importances.parquet")
        return _typed({name: table.column(name).to_pylist() for name in table.column_names})
    if fmt == "json":
        with open(folder / "importances.json", encoding="utf-8") as handle:
            rows = json.load(handle)["rows"]
        names = list(rows[0]) if rows else list(COLUMNS)
        return _typed({name: [row[name] for row in rows] for name in names})
    raise ConceptsError(f"unknown export format {fmt}; choose among {', '.join(FORMATS)}")


def load_export(path: str | os.PathLike, *, format: str | None = None, verify: bool = True) -> Export:
    """Read an export folder (or a run folder that has ``exports/``) back into arrays.

    ``format`` picks the table to read (default: the first of csv, parquet, json present).
    With ``verify`` the sha256 of every file is checked against ``manifest.json``.
    """
    folder = Path(path)
    if not (folder / "manifest.json").exists() and (folder / "exports" / "manifest.json").exists():
        folder = folder / "exports"
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise ConceptsError(f"{path} is not an export folder (no manifest.json); run `concepts export` first")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != "concepts-export":
        raise ConceptsError(f"{manifest_path} is not a concepts export manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ConceptsError(f"{manifest_path} has format version {manifest['format_version']}; this concepts "
                            f"reads up to {FORMAT_VERSION}: upgrade the package")
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
    importances = _read_table(folder, format)

    header, body = _read_csv(folder / "classes.csv")
    classes = [dict(zip(header, row)) for row in body]
    for entry in classes:
        for key in ("class_index", "n_images", "n_images_listed", "n_concepts"):
            entry[key] = int(entry[key])
        entry["methods"] = [m for m in entry["methods"].split(";") if m]
    stem_to_id = {c["stem"]: c["class_id"] for c in classes}

    header, body = _read_csv(folder / "images.csv")
    col = {name: i for i, name in enumerate(header)}
    images: dict[str, dict[str, list]] = {}
    for row in body:
        entry = images.setdefault(row[col["class_id"]], {"path": [], "sha256": [], "skipped": [], "logit": [],
                                                          "image_index": []})
        entry["path"].append(row[col["path"]])
        entry["sha256"].append(row[col["sha256"]])
        entry["skipped"].append(bool(int(row[col["skipped"]])))
        entry["logit"].append(float(row[col["logit"]]))
        entry["image_index"].append(int(row[col["image_index"]]))
    images_np = {cid: {"path": list(e["path"]), "sha256": list(e["sha256"]),
                       "skipped": np.asarray(e["skipped"], dtype=bool),
                       "logit": np.asarray(e["logit"], dtype=np.float64).astype(np.float32),
                       "image_index": np.asarray(e["image_index"], dtype=np.int64)}
                 for cid, e in images.items()}

    with np.load(folder / "concept_banks.npz", allow_pickle=False) as handle:
        banks = {stem_to_id.get(key, key): handle[key] for key in handle.files}
    per_image: dict[str, dict[str, np.ndarray]] = {}
    with np.load(folder / "per_image_importances.npz", allow_pickle=False) as handle:
        for key in handle.files:
            stem, _, method = key.rpartition("/")
            per_image.setdefault(stem_to_id.get(stem, stem), {})[method] = handle[key]
    return Export(path=folder, manifest=manifest, importances=importances, classes=classes, images=images_np,
                  banks=banks, per_image=per_image)
