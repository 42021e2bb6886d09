"""``concepts export``: write a run's tables and arrays to ``RUN/exports/`` (built aside and swapped in whole)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .._version import __version__
from ..errors import ConceptsError
from ..runner import say
from ..schema import RunFolder, file_sha256, replace_folder, write_manifest
from ..schema.hdf5 import temporary_name
from ..schema.locks import artefact_lock
from ..schema.classdata import list_run_classes, load_class
from ..evidence import DIAGNOSTIC_COLUMNS
from ..evidence.crops import MIN_CROP
from .tables import (CLASS_COLUMNS, COLUMNS, IMAGE_COLUMNS, TOP_CROP_COLUMNS, class_row, diagnostic_row, frame,
                     image_rows, importance_rows, top_crop_rows)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"concepts": __version__, "python": sys.version.split()[0],
                                  "platform": platform.platform()}
    for name in ("numpy", "h5py", "torch", "timm", "scikit-learn", "scipy", "pandas", "pyarrow", "Pillow",
                 "Jinja2", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_table(table: pd.DataFrame, folder: Path, fmt: str) -> str:
    """``importances.<fmt>`` in ``folder``; returns the file name."""
    name = f"importances.{fmt}"
    if fmt == "csv":
        table.to_csv(folder / name, index=False)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pa.Table.from_pandas(table, preserve_index=False)
        meta = dict(arrow.schema.metadata or {}) | {b"concepts.columns": json.dumps(COLUMNS).encode()}
        pq.write_table(arrow.replace_schema_metadata(meta), folder / name)
    elif fmt == "json":
        rows = json.loads(table.to_json(orient="records", double_precision=15))
        for row, record in zip(rows, table.itertuples(index=False)):  # float32 values as their shortest text
            for column in ("importance", "importance_raw", "ci_low", "ci_high", "share_ci_low", "share_ci_high",
                           "label_score"):
                value = getattr(record, column)
                row[column] = None if not np.isfinite(value) else float(str(np.float32(value)))
        with open(folder / name, "w", encoding="utf-8") as handle:
            json.dump({"columns": COLUMNS, "rows": rows}, handle, indent=0, ensure_ascii=False)
            handle.write("\n")
    return name


def _columns(title: str, columns: dict[str, str]) -> list[str]:
    return ["", f"## Columns of {title}", ""] + [f"- `{name}`: {meaning}" for name, meaning in columns.items()]


def readme() -> str:
    """The export's own documentation (plain Markdown)."""
    lines = ["# Exports of a concepts run", "",
             "Written by `concepts export`. Every file is listed, with its sha256, in `manifest.json`, which also "
             "records the run's configuration, the package versions, the provenance of every input artefact and, "
             "once, the two roots every path is relative to: `run` (the run folder) and `image_root` (the deepest "
             "folder holding every photo of the run).",
             "", "## Files", "",
             "- `importances.csv` / `.parquet` / `.json`: one row per class, importance method and concept.",
             "- `diagnostics.csv`: one row per class: how much of the class logit the concepts explain "
             "(logit = bias + concept contributions + residual), the reconstruction error, the convergence of the "
             "factorisation and the fidelity scores of each method.",
             "- `top_crops.csv`: the top crops of every concept (the crops the atlas shows), with their photo "
             "(relative to `image_root`), its sha256 and the crop box in the original photo's pixels: enough to "
             "rebuild a CRAFT crop figure from the photos alone.",
             "- `classes.csv`: one row per class.",
             "- `images.csv`: one row per listed photo of each class; `image_index` is the row of that image in the "
             "per-image arrays.",
             "- `concept_banks.npz`: `numpy.load(...)[stem]` is the (n_concepts, D) float32 concept bank of a class "
             "(row k = concept k).",
             "- `per_image_importances.npz`: `numpy.load(...)[stem + '/' + method]` is the (n_images, n_concepts) "
             "float32 per-image importance (same units as `importance_raw`).",
             "- `subconcept_banks.npz`, `per_image_subconcept_importances.npz` (classes factorised with "
             "`--recursive`): the same for the sub-concepts; their rows in `importances.*` have `depth` >= 1 and "
             "`parent_concept` the node they split.",
             "- `fviz/<stem>/concept_<k>.png`, `logit.png` (runs with feature visualisations): the MACO image of "
             "concept k and of the class logit; `subconcept_<node>.png` (recursive classes): that of sub-concept "
             "`node` (the `concept` column of its row in `importances.*`); `*_alpha.png`: its transparency map "
             "(8-bit).",
             "", "Shares: `importance` is a signed share of the class's summed absolute importance by one method, not "
             "a share of the logit. The share of the logit explained by the concepts is `explained_share` in "
             "`diagnostics.csv`; a concept's share of the logit is its gradient `importance_raw` divided by the "
             "class's `logit` there."]
    lines += _columns("importances.*", COLUMNS) + _columns("diagnostics.csv", DIAGNOSTIC_COLUMNS)
    lines += _columns("top_crops.csv", TOP_CROP_COLUMNS)
    lines += _columns("classes.csv", CLASS_COLUMNS) + _columns("images.csv", IMAGE_COLUMNS)
    lines += ["", "## Reload", "", "```python", "from concepts.export import load_export",
              "export = load_export('RUN/exports')   # checks every sha256 of manifest.json",
              "export.banks[class_id]               # (n_concepts, D) float32",
              "export.per_image[class_id][method]   # (n_images, n_concepts) float32",
              "export.share(class_id, 'sobol')      # (n_concepts,) shares in bank order",
              "export.dataframe()                   # the importances table (pandas)",
              "export.diagnostics, export.top_crops # the other tables (pandas)",
              "export.image_path(class_id, i)       # the absolute path of photo i (image_root / path)", "```", "",
              "Without the package: `pandas.read_csv('importances.csv')`, "
              "`numpy.load('concept_banks.npz')[stem]`, `PIL.Image.open(image_root + '/' + path).crop((x0, y0, x1, "
              "y1))` for a row of `top_crops.csv`.", ""]
    return "\n".join(lines)


def image_root(run: Path, paths: list[str]) -> tuple[Path, list[str]]:
    """The deepest folder holding every photo, and each photo's path relative to it (POSIX separators).
    Recorded relative paths are relative to the run folder."""
    absolute = [Path(p) if Path(p).is_absolute() else (run / p) for p in paths]
    absolute = [Path(os.path.normpath(p.resolve() if p.exists() else p.absolute())) for p in absolute]
    if not absolute:
        return run.resolve(), []
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    return root, [p.relative_to(root).as_posix() for p in absolute]


def _input_provenance(run: Path, data) -> dict[str, Any]:
    attrs = {"extract": data.act_attrs, "factorize": data.concept_attrs, "importance": data.importance_attrs}
    out = {}
    for stage, path in data.paths.items():
        if path.exists():
            out[stage] = {"path": str(path.relative_to(run)), "sha256": file_sha256(path),
                          "bytes": path.stat().st_size, "attrs": _jsonable(attrs.get(stage, {}))}
    return out


def export_run(run: str | os.PathLike, formats: Iterable[str] | str | None = None, *, config=None,
               classes: Iterable[str] | None = None, out: str | os.PathLike | None = None,
               progress: bool = True) -> Path:
    """Write the exports of a run to ``RUN/exports`` (or ``out``) and return that folder.

    ``formats`` chooses the table formats among csv, parquet and json (default: the ``export`` settings of
    ``config``, all three). The concept banks, per-image importances, ``diagnostics.csv``, ``top_crops.csv``,
    ``classes.csv``, ``images.csv``, ``README.md`` and ``manifest.json`` are always written; photo paths are
    relative to the image root recorded once in the manifest (``image_root``).
    """
    from tqdm.auto import tqdm

    from ..settings import stage_config

    given = {k: v for k, v in {"classes": classes, "formats": formats}.items() if v is not None}
    cfg = stage_config("export", config, **given)
    if len(cfg.model.layers) > 1:
        raise ConceptsError("export: one layer at a time (--layer NAME): each layer's exports go to its own folder")
    folder = RunFolder(run, layer=cfg.model.main_layer)
    formats = list(cfg.export.formats)
    classes = list(cfg.data.classes) if cfg.data.classes else None
    found = list_run_classes(folder.path, classes=classes)
    if not found:
        raise ConceptsError(f"{run} has no class with both activations and concepts; nothing to export")
    target = Path(out) if out is not None else folder.path / "exports"
    if target.exists() and any(target.iterdir()) and not (target / "manifest.json").exists():
        raise ConceptsError(f"{target} exists and is not an export folder; choose an empty or new folder")
    with artefact_lock(target, say=lambda m: say(m, progress)):  # one writer of the exports at a time
        work = temporary_name(target)
        work.mkdir(parents=True)
        try:
            _write(folder, found, work, formats, cfg.export.top_crops, progress=progress, bar=tqdm)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return replace_folder(work, target)


def _run_image_root(folder: RunFolder, found) -> tuple[Path, dict[str, list[str]]]:
    """The image root of the chosen classes and, per class id, its photos' paths relative to it."""
    listed: dict[str, list[str]] = {}
    for class_id, _ in found:
        with folder.activations(class_id) as cache:
            listed[class_id] = list(cache.images["path"])
    root, relative = image_root(folder.path, [p for paths in listed.values() for p in paths])
    out, start = {}, 0
    for class_id, paths in listed.items():
        out[class_id] = relative[start:start + len(paths)]
        start += len(paths)
    return root, out


def _collect(folder: RunFolder, found, relative: dict[str, list[str]], top_k: int, work: Path, bar, progress: bool,
             labels_from):
    """Every per-class part of the tables and arrays, class by class (and the feature visualisations' PNGs)."""
    from ..schema import identity
    from ..schema.labels import concept_labels

    parts: dict[str, list] = {"importances": [], "classes": [], "images": [], "diagnostics": [], "top_crops": [],
                              "manifest": []}
    arrays: dict[str, dict[str, np.ndarray]] = {"banks": {}, "per_image": {}, "sub_banks": {}, "sub_per_image": {}}
    pictures: dict[str, dict[str, Any]] = {}
    for class_id, stem in bar(found, desc="export", unit="class", disable=not progress):
        data = load_class(folder.path, class_id, with_maps=False, with_coefficients=top_k > 0)
        paths = relative[class_id]
        if data.paths["fviz"].exists():
            from ..fviz.images import write_pngs

            written = write_pngs(folder.fviz(class_id), work / "fviz" / stem)
            pictures.update({f"fviz/{stem}/{name}": {"description": text} for name, text in written.items()})
        labels = concept_labels(folder.path, data.class_id, data.n_concepts, identity(data.concept_attrs),
                                manual=labels_from[0], vocabulary=labels_from[1])
        parts["importances"].append(importance_rows(data, labels))
        parts["images"].append(image_rows(data, paths))
        parts["top_crops"].append(top_crop_rows(data, paths, top_k, MIN_CROP))
        parts["diagnostics"].append(diagnostic_row(data))
        row = class_row(data)
        parts["classes"].append(row)
        arrays["banks"][stem] = np.asarray(data.components, dtype=np.float32)
        for method, imp in sorted(data.methods.items()):
            arrays["per_image"][f"{stem}/{method}"] = np.asarray(imp.per_image, dtype=np.float32)
        if data.tree is not None and data.tree.n_nodes:
            arrays["sub_banks"][stem] = np.asarray(data.tree.components, np.float32)
            for method, sub in sorted((data.subconcepts.methods if data.subconcepts else {}).items()):
                arrays["sub_per_image"][f"{stem}/{method}"] = np.asarray(sub["per_image"], np.float32)
        parts["manifest"].append({**{k: row[k] for k in ("class_id", "class_name", "class_index", "stem",
                                                         "n_images", "n_concepts")},
                                  "methods": sorted(data.methods), "inputs": _input_provenance(folder.path, data)})
    return parts, arrays, pictures


#: the CSV tables beside the importances: name -> (columns, description)
CSV_TABLES = {
    "diagnostics": (DIAGNOSTIC_COLUMNS, "one row per class: share of the logit explained by the concepts, residual, "
                                        "bias, reconstruction error, convergence, fidelity scores"),
    "top_crops": (TOP_CROP_COLUMNS, "the top crops of every concept: photo (relative to image_root), sha256, box in "
                                    "original pixels, coefficient"),
    "classes": (CLASS_COLUMNS, "one row per class"),
    "images": (IMAGE_COLUMNS, "every listed photo (path relative to image_root); image_index is the row in the "
                              "per-image arrays of its class"),
}


def _write(folder: RunFolder, found, work: Path, formats: list[str], top_k: int, *, progress: bool, bar) -> None:
    from ..schema.labels import read_manual_labels, read_vocabulary_labels

    root, relative = _run_image_root(folder, found)
    manual, vocabulary = read_manual_labels(folder.path), read_vocabulary_labels(folder.path)
    parts, arrays, pictures = _collect(folder, found, relative, top_k, work, bar, progress, (manual, vocabulary))
    banks, per_image, sub_banks, sub_per_image = (arrays[k] for k in ("banks", "per_image", "sub_banks",
                                                                      "sub_per_image"))
    table = frame(parts["importances"], COLUMNS)
    files: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        files[write_table(table, work, fmt)] = {"description": "importance of every concept, one row per class, "
                                                               "method and concept", "rows": len(table)}
    for name, (columns, description) in CSV_TABLES.items():
        part = frame(parts[name], columns)
        part.to_csv(work / f"{name}.csv", index=False)
        files[f"{name}.csv"] = {"description": description, "rows": len(part)}
    np.savez(work / "concept_banks.npz", **banks)
    files["concept_banks.npz"] = {"description": "np.load(...)[stem] -> (n_concepts, D) float32 concept vectors of "
                                                 "the class, row k = concept k", "keys": sorted(banks)}
    np.savez(work / "per_image_importances.npz", **per_image)
    files["per_image_importances.npz"] = {"description": "np.load(...)[f'{stem}/{method}'] -> (n_images, "
                                                         "n_concepts) float32 per-image importance; row i is "
                                                         "image_index i of images.csv", "keys": sorted(per_image)}
    if sub_banks:
        np.savez(work / "subconcept_banks.npz", **sub_banks)
        files["subconcept_banks.npz"] = {"description": "np.load(...)[stem] -> (S, D') float32 sub-concept vectors; "
                                                        "row i = node r + i (concept column of importances)",
                                         "keys": sorted(sub_banks)}
        np.savez(work / "per_image_subconcept_importances.npz", **sub_per_image)
        files["per_image_subconcept_importances.npz"] = {
            "description": "np.load(...)[f'{stem}/{method}'] -> (n_images, S) float32 per-image importance of the "
                           "sub-concepts (NaN where the parent has no position)", "keys": sorted(sub_per_image)}
    files.update(pictures)
    (work / "README.md").write_text(readme(), encoding="utf-8")
    files["README.md"] = {"description": "what each file holds and how to reload it"}
    for name, entry in files.items():
        entry.update(sha256=file_sha256(work / name), bytes=(work / name).stat().st_size)
    config_path = folder.root / "config.yaml"
    write_manifest(work, _jsonable({
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run": str(folder.path.resolve()), "image_root": str(root), "config": folder.config(),
        "config_file": {"path": "config.yaml", "sha256": file_sha256(config_path)} if config_path.exists() else None,
        "versions": _versions(), "formats": formats, "columns": COLUMNS,
        "table_columns": {name: columns for name, (columns, _) in CSV_TABLES.items()}, "files": files,
        "classes": parts["manifest"], "labels": _label_provenance(folder.path, vocabulary[0])}))


def _label_provenance(run: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Where the concept names came from: the vocabulary labels' encoder and vocabulary, the manual file's sha256."""
    from ..schema.labels import MANUAL_FILE

    manual = run / MANUAL_FILE
    return {"vocabulary": {k: meta.get(k) for k in ("encoder", "vocab", "settings", "created")} if meta else None,
            "manual": {"path": MANUAL_FILE, "sha256": file_sha256(manual)} if manual.is_file() else None}
