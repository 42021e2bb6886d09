"""The export tables as pandas DataFrames: one row per class, method and concept (``importances``), one row per
class (``classes``, ``diagnostics``), one row per listed photo (``images``), one row per top crop of every concept
(``top_crops``). Column meanings are defined once, in :data:`COLUMNS` and the ``*_COLUMNS`` dicts.

Photo paths are relative to the image root (the deepest folder holding every photo of the run), recorded once in
``manifest.json`` as ``image_root``.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..evidence import DIAGNOSTIC_COLUMNS, class_diagnostics, ranking, top_crops
from ..schema.classdata import ClassData

#: The columns of ``importances.*``, in order, with their meaning.
COLUMNS: dict[str, str] = {
    "class_id": "class identifier (folder name / WordNet id)",
    "class_index": "index of the class logit in the model output (-1 if unknown)",
    "class_name": "human-readable class name",
    "concept": "index of the concept in the class's concept bank (row of concept_banks.npz[stem]); a sub-concept's "
               "node id r + i (row i of subconcept_banks.npz[stem])",
    "parent_concept": "the concept (node id) a sub-concept splits; -1 for a concept of the bank",
    "depth": "0 for a concept of the bank, 1 for its sub-concepts, 2 for theirs ...",
    "rank": "1 = most important concept of the class by this method (by importance_raw; a sub-concept: among its "
            "siblings)",
    "importance": "the concept's signed share of the class's importance by this method: importance_raw divided by "
                  "the sum of the absolute importance_raw of the class's concepts (in [-1, 1]; the absolute values "
                  "sum to 1; negative: the concept lowers the class score); a sub-concept's shares split its "
                  "parent's. Sobol: a share of the summed Sobol indices (a variance share); gradient and occlusion: "
                  "of the summed absolute concept contributions. Not a share of the class logit: that is "
                  "importance_raw / diagnostics.csv logit (the concepts explain diagnostics.csv explained_share of "
                  "the logit)",
    "importance_raw": "class-level importance: the mean over the class's usable images. Sobol: total index "
                      "(dimensionless, a share of the variance of the logit under random concept masks); "
                      "gradient x input and occlusion: the concept's contribution to the class logit, in logit "
                      "units",
    "ci_low": "lower bound of the confidence interval of importance_raw (NaN if not computed)",
    "ci_high": "upper bound of the confidence interval of importance_raw (NaN if not computed)",
    "share_ci_low": "lower bound of the confidence interval of importance (NaN if not computed)",
    "share_ci_high": "upper bound of the confidence interval of importance (NaN if not computed)",
    "method": "importance method (sobol, gradient, occlusion); prevalence when the run has no class score "
              "(--head none): the share of the class's images whose strongest concept it is, not an importance",
    "n_images": "number of usable (non-skipped) images of the class",
    "n_concepts": "number of concepts of the class",
    "factorization": "concept extraction method (nmf, semi_nmf, pca, ...)",
    "model": "model name",
    "layer": "layer where the model was cut",
    "stem": "file stem of the class's artefacts and key in the .npz files",
    "concept_label": "the concept's name: RUN/labels.csv, else the best word of `concepts label` (empty: none)",
    "label_source": "where concept_label comes from: manual | vocabulary | none",
    "label_score": "cosine of the centred concept and word embeddings (vocabulary labels; NaN otherwise)",
}
INT_COLUMNS = ("class_index", "concept", "parent_concept", "depth", "rank", "n_images", "n_concepts")
FLOAT_COLUMNS = ("importance", "importance_raw", "ci_low", "ci_high", "share_ci_low", "share_ci_high", "label_score")

CLASS_COLUMNS: dict[str, str] = {
    "class_id": "class identifier", "class_index": "logit index", "class_name": "readable name",
    "stem": "file stem", "n_images": "usable images", "n_images_listed": "images listed (skipped ones too)",
    "n_concepts": "concepts", "factorization": "concept method", "methods": "importance methods, ';'-separated",
    "model": "model name", "layer": "cut layer",
    "head": "the class score explained: model (its classifier) | probe | zeroshot | none (prevalence, no score)",
}
IMAGE_COLUMNS: dict[str, str] = {
    "class_id": "class identifier", "stem": "file stem", "image_index": "row of the class in the per-image arrays",
    "path": "the photo, relative to the image root (manifest.json image_root)",
    "sha256": "sha256 of the photo's bytes", "skipped": "1 when the photo could not be read",
    "width": "width of the original photo in pixels (0 when skipped)", "height": "its height",
    "logit": "the model's logit for the class (empty when skipped)",
    "predicted": "the model's top-1 logit index (-1 when skipped)",
}
TOP_CROP_COLUMNS: dict[str, str] = {
    "class_id": "class identifier", "stem": "file stem",
    "concept": "index of the concept in the class's concept bank",
    "rank": "1 = the crop with the largest coefficient of the concept (one crop per photo)",
    "image_index": "row of the photo in images.csv (image_index) and in the per-image arrays",
    "path": "the photo, relative to the image root (manifest.json image_root)",
    "sha256": "sha256 of the photo's bytes (check it before rebuilding a figure)",
    "x0": "left edge of the crop in the original photo's pixels (PIL box: x0, y0, x1, y1, x1 and y1 excluded)",
    "y0": "top edge", "x1": "right edge", "y1": "bottom edge",
    "input_x0": "the same box in model-input pixels (the photo resized and centre-cropped as the model saw it)",
    "input_y0": "top edge, model-input pixels", "input_x1": "right edge, model-input pixels",
    "input_y1": "bottom edge, model-input pixels",
    "coefficient": "the concept's coefficient on the crop's row (its activation, in the bank's units)",
}
DTYPES: dict[str, Any] = {**{c: "int64" for c in INT_COLUMNS}, **{c: "float32" for c in FLOAT_COLUMNS},
                          "n_images_listed": "int64", "image_index": "int64", "skipped": "int64",
                          "logit": "float32", "width": "int64", "height": "int64", "predicted": "int64",
                          **{c: "int64" for c in ("x0", "y0", "x1", "y1", "input_x0", "input_y0", "input_x1",
                                                   "input_y1", "n_iter", "max_iter", "converged")},
                          "coefficient": "float32"}


def _typed(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    frame = frame.reindex(columns=list(columns))
    for name in frame.columns:
        frame[name] = frame[name].astype(DTYPES.get(name, "object"))
    return frame


def _ranks(class_importance: np.ndarray) -> np.ndarray:
    order = ranking(class_importance)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def _common(data: ClassData, method: str) -> dict[str, Any]:
    return {"class_id": data.class_id, "class_index": int(data.class_index), "class_name": data.class_name,
            "method": method, "n_images": int(data.n_images), "n_concepts": int(data.n_concepts),
            "factorization": str(data.concept_attrs.get("method", "")),
            "model": str(data.act_attrs.get("model", "")), "layer": str(data.act_attrs.get("layer", "")),
            "stem": data.stem}


def subconcept_rows(data: ClassData, method: str) -> pd.DataFrame | None:
    """One row per sub-concept of a class by ``method`` (None without sub-concept importances)."""
    from ..schema.labels import ConceptLabel

    sub, tree = data.subconcepts, data.tree
    if sub is None or tree is None or method not in sub.methods or not len(sub.node):
        return None
    arrays = sub.methods[method]
    positions = np.asarray(sub.node) - data.n_concepts
    parents = tree.parent[positions]
    rank = np.ones(len(positions), np.int64)
    for parent in np.unique(parents):
        group = np.flatnonzero(parents == parent)
        rank[group] = _ranks(np.nan_to_num(arrays["share_of_parent"][group], nan=-np.inf))
    nan = np.full(len(positions), np.nan, np.float32)
    return pd.DataFrame({**_common(data, method), "concept": np.asarray(sub.node), "parent_concept": parents,
                         "depth": tree.depth[positions], "rank": rank,
                         "importance": np.asarray(arrays["share"], np.float32),
                         "importance_raw": np.asarray(arrays["class_importance"], np.float32), "ci_low": nan,
                         "ci_high": nan, "share_ci_low": nan, "share_ci_high": nan,
                         "concept_label": ConceptLabel().label, "label_source": ConceptLabel().source,
                         "label_score": nan})


def importance_rows(data: ClassData, labels: list | None = None) -> pd.DataFrame:
    """One row per method and concept of a class (then its sub-concepts, if any); ``labels``: the concepts'
    ``ConceptLabel`` (none when absent; sub-concepts are not labelled)."""
    from ..schema.labels import ConceptLabel

    named = list(labels or [])
    named += [ConceptLabel()] * (data.n_concepts - len(named))
    parts = []
    for method in sorted(data.methods):
        imp = data.methods[method]
        r = len(imp.share)
        parts.append(pd.DataFrame({
            **_common(data, method), "concept": np.arange(r), "parent_concept": -1, "depth": 0,
            "rank": _ranks(imp.class_importance), "importance": np.asarray(imp.share, np.float32),
            "importance_raw": np.asarray(imp.class_importance, np.float32),
            "ci_low": np.asarray(imp.ci_low, np.float32), "ci_high": np.asarray(imp.ci_high, np.float32),
            "share_ci_low": np.asarray(imp.share_ci_low, np.float32),
            "share_ci_high": np.asarray(imp.share_ci_high, np.float32),
            "concept_label": [named[k].label for k in range(r)], "label_source": [named[k].source for k in range(r)],
            "label_score": np.asarray([named[k].score for k in range(r)], np.float32)}))
        sub = subconcept_rows(data, method)
        if sub is not None:
            parts.append(sub)
    return _typed(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), COLUMNS)


def class_row(data: ClassData) -> dict[str, Any]:
    return {"class_id": data.class_id, "class_index": data.class_index, "class_name": data.class_name,
            "stem": data.stem, "n_images": data.n_images, "n_images_listed": len(data.image_paths),
            "n_concepts": data.n_concepts, "factorization": str(data.concept_attrs.get("method", "")),
            "methods": ";".join(sorted(data.methods)), "model": str(data.act_attrs.get("model", "")),
            "layer": str(data.act_attrs.get("layer", "")),
            "head": str(data.importance_attrs.get("head") or data.act_attrs.get("head") or "model")}


def image_rows(data: ClassData, paths: list[str]) -> pd.DataFrame:
    """One row per listed photo; ``paths``: the photos' paths relative to the image root."""
    return _typed(pd.DataFrame({
        "class_id": data.class_id, "stem": data.stem, "image_index": np.arange(len(data.image_paths)),
        "path": paths, "sha256": data.image_sha256, "skipped": data.skipped.astype(np.int64),
        "width": data.image_width, "height": data.image_height,
        "logit": np.asarray(data.logit, np.float32), "predicted": data.predicted}), IMAGE_COLUMNS)


def top_crop_rows(data: ClassData, paths: list[str], k: int, min_size: int) -> pd.DataFrame:
    """The ``k`` top crops of every concept (as the atlas shows them); ``paths`` as in :func:`image_rows`."""
    rows = []
    for concept, crops in top_crops(data, k, min_size).items():
        for crop in crops:
            box = crop.original_box or (-1, -1, -1, -1)
            rows.append({"class_id": data.class_id, "stem": data.stem, "concept": concept, "rank": crop.rank,
                         "image_index": crop.image, "path": paths[crop.image], "sha256": data.image_sha256[crop.image],
                         "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3],
                         "input_x0": crop.box[0], "input_y0": crop.box[1], "input_x1": crop.box[2],
                         "input_y1": crop.box[3], "coefficient": crop.coefficient})
    return _typed(pd.DataFrame(rows, columns=list(TOP_CROP_COLUMNS)), TOP_CROP_COLUMNS)


def diagnostic_row(data: ClassData) -> dict[str, Any]:
    """The class's row of ``diagnostics.csv``."""
    return class_diagnostics(data).row()


DTYPES.update({c: "float32" for c in DIAGNOSTIC_COLUMNS if c.startswith(("logit", "rel_error"))
               or c.endswith(("_share", "_c_deletion", "_c_insertion", "_c_mufidelity"))})
DTYPES["decomposition"] = "object"


def frame(rows: list[pd.DataFrame] | list[dict], columns: Iterable[str]) -> pd.DataFrame:
    """Concatenate per-class parts (frames or row dicts) into one typed table."""
    if rows and isinstance(rows[0], dict):
        return _typed(pd.DataFrame(rows), columns)
    return _typed(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(columns)), columns)
