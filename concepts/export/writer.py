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
from .tables import CLASS_COLUMNS, COLUMNS, IMAGE_COLUMNS, class_row, frame, image_rows, importance_rows


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


def readme() -> str:
    """The export's own documentation (plain Markdown)."""
    lines = ["# Exports of a concepts run", "",
             "Written by `concepts export`. Every file is listed, with its sha256, in `manifest.json`, which also "
             "records the run's configuration, the package versions and the provenance of every input artefact.",
             "", "## Files", "",
             "- `importances.csv` / `.parquet` / `.json`: one row per class, importance method and concept.",
             "- `classes.csv`: one row per class.",
             "- `images.csv`: one row per listed photo of each class; `image_index` is the row of that image in the "
             "per-image arrays.",
             "- `concept_banks.npz`: `numpy.load(...)[stem]` is the (n_concepts, D) float32 concept bank of a class "
             "(row k = concept k).",
             "- `per_image_importances.npz`: `numpy.load(...)[stem + '/' + method]` is the (n_images, n_concepts) "
             "float32 per-image importance.",
             "- `subconcept_banks.npz`, `per_image_subconcept_importances.npz` (classes factorised with "
             "`--recursive`): the same for the sub-concepts; their rows in `importances.*` have `depth` >= 1 and "
             "`parent_concept` the node they split.",
             "- `fviz/<stem>/concept_<k>.png`, `logit.png` (runs with feature visualisations): the MACO image of "
             "concept k and of the class logit; `*_alpha.png`: its transparency map (8-bit).",
             "", "## Columns of importances.*", ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in COLUMNS.items()]
    lines += ["", "## Columns of classes.csv", ""] + [f"- `{k}`: {v}" for k, v in CLASS_COLUMNS.items()]
    lines += ["", "## Columns of images.csv", ""] + [f"- `{k}`: {v}" for k, v in IMAGE_COLUMNS.items()]
    lines += ["", "## Reload", "", "```python", "from concepts.export import load_export",
              "export = load_export('RUN/exports')   # checks every sha256 of manifest.json",
              "export.banks[class_id]               # (n_concepts, D) float32",
              "export.per_image[class_id][method]   # (n_images, n_concepts) float32",
              "export.share(class_id, 'sobol')      # (n_concepts,) shares in bank order",
              "export.dataframe()                   # the table (pandas)", "```", "",
              "Without the package: `pandas.read_csv('importances.csv')`, "
              "`numpy.load('concept_banks.npz')[stem]`.", ""]
    return "\n".join(lines)


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
    ``config``, all three). The concept banks, per-image importances, ``classes.csv``, ``images.csv``,
    ``README.md`` and ``manifest.json`` are always written.
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
            _write(folder, found, work, formats, progress=progress, bar=tqdm)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return replace_folder(work, target)


def _write(folder: RunFolder, found, work: Path, formats: list[str], *, progress: bool, bar) -> None:
    from ..schema import identity
    from ..schema.labels import concept_labels, read_manual_labels, read_vocabulary_labels

    parts, class_rows, images, banks, per_image, manifest_classes, pictures = [], [], [], {}, {}, [], {}
    manual, vocabulary = read_manual_labels(folder.path), read_vocabulary_labels(folder.path)
    sub_banks, sub_per_image = {}, {}
    for class_id, stem in bar(found, desc="export", unit="class", disable=not progress):
        data = load_class(folder.path, class_id, with_maps=False, with_coefficients=False)
        if data.paths["fviz"].exists():
            from ..fviz.images import write_pngs

            written = write_pngs(folder.fviz(class_id), work / "fviz" / stem)
            pictures.update({f"fviz/{stem}/{name}": {"description": text} for name, text in written.items()})
        labels = concept_labels(folder.path, data.class_id, data.n_concepts, identity(data.concept_attrs),
                                manual=manual, vocabulary=vocabulary)
        parts.append(importance_rows(data, labels))
        images.append(image_rows(data))
        class_rows.append(class_row(data))
        banks[stem] = np.asarray(data.components, dtype=np.float32)
        for method, imp in sorted(data.methods.items()):
            per_image[f"{stem}/{method}"] = np.asarray(imp.per_image, dtype=np.float32)
        if data.tree is not None and data.tree.n_nodes:
            sub_banks[stem] = np.asarray(data.tree.components, np.float32)
            for method, arrays in sorted((data.subconcepts.methods if data.subconcepts else {}).items()):
                sub_per_image[f"{stem}/{method}"] = np.asarray(arrays["per_image"], np.float32)
        manifest_classes.append({**{k: class_row(data)[k] for k in ("class_id", "class_name", "class_index", "stem",
                                                                     "n_images", "n_concepts")},
                                 "methods": sorted(data.methods), "inputs": _input_provenance(folder.path, data)})
    table = frame(parts, COLUMNS)
    files: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        files[write_table(table, work, fmt)] = {"description": "importance of every concept, one row per class, "
                                                               "method and concept", "rows": len(table)}
    frame(class_rows, CLASS_COLUMNS).to_csv(work / "classes.csv", index=False)
    files["classes.csv"] = {"description": "one row per class", "rows": len(class_rows)}
    image_table = frame(images, IMAGE_COLUMNS)
    image_table.to_csv(work / "images.csv", index=False)
    files["images.csv"] = {"description": "every listed photo; image_index is the row in the per-image arrays of "
                                          "its class", "rows": len(image_table)}
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
        "run": str(folder.path.resolve()), "config": folder.config(),
        "config_file": {"path": "config.yaml", "sha256": file_sha256(config_path)} if config_path.exists() else None,
        "versions": _versions(), "formats": formats, "columns": COLUMNS, "files": files,
        "classes": manifest_classes, "labels": _label_provenance(folder.path, vocabulary[0])}))


def _label_provenance(run: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Where the concept names came from: the vocabulary labels' encoder and vocabulary, the manual file's sha256."""
    from ..schema.labels import MANUAL_FILE

    manual = run / MANUAL_FILE
    return {"vocabulary": {k: meta.get(k) for k in ("encoder", "vocab", "settings", "created")} if meta else None,
            "manual": {"path": MANUAL_FILE, "sha256": file_sha256(manual)} if manual.is_file() else None}
