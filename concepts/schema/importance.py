"""``RUN/importance/<class>.h5`` (stage 3): the contract, its writer and its reader (:func:`read_importance`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .hdf5 import atomic_artefact, identity, read_attrs, reading, write_attrs
from .spec import COMMON_ATTRIBUTES, FileSpec, Item

#: the arrays of one importance method, in file order
METHOD_ARRAYS = ("per_image", "class_importance", "share", "ci_low", "ci_high", "share_ci_low", "share_ci_high",
                 "ranking")
#: the per-method fidelity curves
FIDELITY_ARRAYS = ("x", "deletion_curve", "insertion_curve", "mufidelity_per_image")
_NOT_METHODS = {"maps", "images", "fidelity"}
#: the ``share`` attribute of a method group: shares are class_importance / sum(|class_importance|)
SHARE_DEFINITION = "abs_sum"
_NOT_METHODS = {"maps", "images", "fidelity", "subconcepts"}
#: the per-method arrays of the sub-concepts
SUB_ARRAYS = ("per_image", "class_importance", "share_of_parent", "share")

IMPORTANCE = FileSpec(
    stage="importance",
    path="RUN/importance/<class>.h5",
    summary="Per-image and class importances of every concept by each method, concept maps and fidelity.",
    datasets=(
        Item("<method>/per_image", "(n_images, r) float32", "importance of each concept on each image (NaN for "
                                                            "skipped images)"),
        Item("<method>/class_importance", "(r,) float32", "class-level importance: the mean over images (raw, "
                                                         "signed for gradient and occlusion)"),
        Item("<method>/share", "(r,) float32", "signed share: class_importance / sum of abs(class_importance) (in "
                                               "[-1, 1]; the absolute shares sum to 1)"),
        Item("<method>/ci_low", "(r,) float32", "lower bound of the confidence interval of class_importance"),
        Item("<method>/ci_high", "(r,) float32", "upper bound"),
        Item("<method>/share_ci_low", "(r,) float32", "the interval on the share scale (divided by the same sum)"),
        Item("<method>/share_ci_high", "(r,) float32", "upper bound"),
        Item("<method>/ranking", "(r,) int32", "concepts by decreasing class importance"),
        Item("maps/presence", "(n_images, r, H, W) float16", "coefficient of every concept at every feature "
                                                             "position"),
        Item("maps/contribution", "(n_images, r, H, W) float16", "the concept's per-position term of the class "
                                                                 "logit (gradient x input)"),
        Item("images/kept", "(n_images,) bool", "images with importances"),
        Item("images/index", "(n_kept,) int32", "their indices"),
        Item("fidelity/<method>/x", "(steps+1,) float32", "fraction of concepts removed / added"),
        Item("fidelity/<method>/deletion_curve", "(steps+1,) float32", "mean class score as concepts are removed"),
        Item("fidelity/<method>/insertion_curve", "(steps+1,) float32", "mean class score as concepts are added"),
        Item("fidelity/<method>/mufidelity_per_image", "(n_kept,) float32", "C-muFidelity of each image"),
        Item("subconcepts/node", "(S,) int32", "sub-concepts (a recursive concepts file): their node ids in the "
                                               "concepts file's `tree/`", required=False),
        Item("subconcepts/threshold", "(S,) float32", "the parent's coefficient at the percentile over the class's "
                                                      "feature-map positions: the parent's positions are those at "
                                                      "or above it", required=False),
        Item("subconcepts/n_positions", "(S,) int32", "the parent's positions over the kept images", required=False),
        Item("subconcepts/<method>/per_image", "(n_images, S) float32", "importance of each sub-concept on each "
                                                                        "image, its parent's positions edited (NaN: "
                                                                        "skipped image, or no parent position)",
             required=False),
        Item("subconcepts/<method>/class_importance", "(S,) float32", "the mean over the images with parent "
                                                                      "positions", required=False),
        Item("subconcepts/<method>/share_of_parent", "(S,) float32", "class_importance over the siblings' "
                                                                     "absolute sum (signed; the absolute values sum to 1 per parent)",
             required=False),
        Item("subconcepts/<method>/share", "(S,) float32", "the parent's share times share_of_parent (the children's "
                                                           "absolute shares sum to the node's absolute share)", required=False),
        Item("subconcepts/presence", "(n_images, S, H', W') float16", "coefficient of each sub-concept at its "
                                                                       "parent's positions (0 elsewhere), on the "
                                                                       "sub-concepts' grid", required=False),
    ),
    attributes=COMMON_ATTRIBUTES + (
        Item("methods, designs, sampler, estimator, seed, residual, exact, score, steps, n_subsets, correlation, "
             "confidence", "", "the settings"),
        Item("class_name, class_index", "", "as in the activations file"),
        Item("linear_head", "bool", "whether the head is global-average-pool + linear (closed forms used)"),
        Item("importance_kind", "str", "importance, or prevalence for a run without a class score (method "
                                       "`prevalence`: share of images whose strongest concept it is; no fidelity)"),
        Item("head, head_source, head_file, head_sha256, head_accuracy, ...", "",
             "the head explained (source: activations | run probe, i.e. RUN/probe/probe.npz, also in `inputs`)"),
        Item("n_images, n_kept, n_concepts, n_positions, grid", "", "sizes"),
        Item("concepts_method", "str", "the concept method of the concepts file"),
        Item("source_config_hash", "str", "config hash of the concepts file"),
        Item("fidelity/: <method>_c_deletion, <method>_c_insertion, <method>_c_mufidelity", "float",
             "the fidelity scores (C-Deletion: lower is better; C-Insertion and C-muFidelity: higher)"),
        Item("fidelity/: reconstruction_logit_original, _reconstructed, _ratio, _correlation, _abs_diff, "
             "reconstruction_relative_error", "float", "how well h(UW) reproduces h(A) on the class logit"),
        Item("fidelity/: score, residual, steps, n_subsets, correlation", "", "the fidelity settings"),
        Item("<method>/: method, exact, residual, class_index, settings", "", "per-method attributes"),
        Item("<method>/: share", "str", "how the share was computed ('abs_sum'; absent: the signed sum, recomputed "
                                        "when read)"),
        Item("subconcepts/: rule, percentile, layer, grid, linear_head", "", "how the sub-concepts were scored"),
    ),
    notes=(
        "Residual: by default the masks act on `(U ⊙ M) W + (A − UW)`, so that with every concept kept the model "
        "sees its own activations and the importances explain the model's real logit; `--no-residual` gives "
        "CRAFT's `(U ⊙ M) W`.",
        "Sub-concepts are scored where their parent is: at every feature-map position whose parent coefficient is "
        "at or above the tree's percentile of that coefficient over the class's positions (for a concept fitted "
        "on crops, the positions stand for its strong crops), the activations become `(S ⊙ m) V + (A − S V)` with "
        "`S` the sub-coefficients of the position and `V` the sub-concepts; every other position keeps its "
        "activations (the residual is always added back here). Sobol / occlusion / gradient x input of the masks "
        "`m` on the class logit, through `h` of the sub-concepts' layer.",
    ),
)


@dataclass
class MethodImportance:
    """The importance of a class's concepts by one method (arrays straight from the file)."""

    method: str
    per_image: np.ndarray  # (n_images, r)
    class_importance: np.ndarray  # (r,) raw
    share: np.ndarray  # (r,) class_importance / sum |class_importance| (signed; |share| sums to 1)
    ci_low: np.ndarray
    ci_high: np.ndarray
    share_ci_low: np.ndarray
    share_ci_high: np.ndarray
    ranking: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SubconceptImportance:
    """The importances of the sub-concepts of a class (nodes of the concepts file's tree)."""

    node: np.ndarray  # (S,) node ids
    threshold: np.ndarray  # (S,) the parent's position threshold
    n_positions: np.ndarray  # (S,)
    methods: dict[str, dict[str, np.ndarray]]  # method -> {per_image, class_importance, share_of_parent, share}
    presence: np.ndarray | None = None  # (n_images, S, H', W')
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportanceRecord:
    """What an importance file holds (``presence``/``contribution`` are None when not read)."""

    attrs: dict[str, Any]
    kept: np.ndarray  # (n_images,) bool
    methods: dict[str, MethodImportance]
    fidelity_attrs: dict[str, Any]
    fidelity: dict[str, dict[str, np.ndarray]]  # method -> curves
    maps_attrs: dict[str, Any] = field(default_factory=dict)
    presence: np.ndarray | None = None
    contribution: np.ndarray | None = None
    path: Path | None = None
    subconcepts: SubconceptImportance | None = None

    @property
    def identity(self) -> str:
        return identity(self.attrs)

    @property
    def index(self) -> np.ndarray:
        return np.flatnonzero(self.kept).astype(np.int32)


def write_importance(path: str | os.PathLike, record: ImportanceRecord) -> Path:
    """Write an importance file from a complete record (atomically)."""
    with atomic_artefact(path) as handle:
        write_attrs(handle, record.attrs)
        images = handle.create_group("images")
        images.create_dataset("kept", data=np.asarray(record.kept, bool))
        images.create_dataset("index", data=record.index)
        for name, result in record.methods.items():
            group = handle.create_group(name)
            for key in METHOD_ARRAYS:
                dtype = np.int32 if key == "ranking" else np.float32
                group.create_dataset(key, data=np.asarray(getattr(result, key), dtype))
            write_attrs(group, {**result.attrs, "share": SHARE_DEFINITION})
        maps = handle.create_group("maps")
        maps.create_dataset("presence", data=np.asarray(record.presence, np.float16))
        maps.create_dataset("contribution", data=np.asarray(record.contribution, np.float16))
        write_attrs(maps, record.maps_attrs)
        fid = handle.create_group("fidelity")
        for name, curves in record.fidelity.items():
            group = fid.create_group(name)
            for key, values in curves.items():
                group.create_dataset(key, data=np.asarray(values, np.float32))
        write_attrs(fid, record.fidelity_attrs)
        if record.subconcepts is not None:
            _write_subconcepts(handle.create_group("subconcepts"), record.subconcepts)
    return Path(path)


def _abs_sum_shares(arrays: dict[str, np.ndarray]) -> None:
    """Shares of a file written before they were divided by the absolute sum (a signed sum near zero made them
    explode): recomputed from the raw class importances and their interval."""
    raw = np.asarray(arrays["class_importance"], np.float64)
    total = np.abs(raw).sum()
    scale = 1.0 / total if total > 1e-12 else 0.0
    arrays["share"] = (raw * scale).astype(np.float32)
    low, high = np.asarray(arrays["ci_low"], np.float64) * scale, np.asarray(arrays["ci_high"], np.float64) * scale
    arrays["share_ci_low"], arrays["share_ci_high"] = np.minimum(low, high).astype(np.float32), \
        np.maximum(low, high).astype(np.float32)
def _write_subconcepts(group, sub: SubconceptImportance) -> None:
    group.create_dataset("node", data=np.asarray(sub.node, np.int32))
    group.create_dataset("threshold", data=np.asarray(sub.threshold, np.float32))
    group.create_dataset("n_positions", data=np.asarray(sub.n_positions, np.int32))
    for name, arrays in sub.methods.items():
        method = group.create_group(name)
        for key in SUB_ARRAYS:
            method.create_dataset(key, data=np.asarray(arrays[key], np.float32))
    if sub.presence is not None:
        group.create_dataset("presence", data=np.asarray(sub.presence, np.float16))
    write_attrs(group, sub.attrs)


def _read_subconcepts(group, maps: bool) -> SubconceptImportance:
    methods = {name: {key: group[name][key][()] for key in SUB_ARRAYS} for name in group
               if hasattr(group[name], "keys")}
    return SubconceptImportance(node=group["node"][()].astype(np.int64), threshold=group["threshold"][()],
                                n_positions=group["n_positions"][()], methods=methods,
                                presence=np.asarray(group["presence"][()], np.float32)
                                if maps and "presence" in group else None, attrs=read_attrs(group))


def read_importance(path: str | os.PathLike, *, maps: bool = True) -> ImportanceRecord:
    """Read an importance file (the concept maps only when asked for)."""
    with reading(path, IMPORTANCE) as handle:
        methods = {}
        for name in handle:
            group = handle[name]
            if name in _NOT_METHODS or not hasattr(group, "keys") or "share" not in group:
                continue
            arrays = {key: group[key][()] for key in METHOD_ARRAYS if key in group}
            r = len(arrays["share"])
            for key in METHOD_ARRAYS:  # files from other writers may lack the optional intervals
                arrays.setdefault(key, np.full(r, np.nan, np.float32))
            method_attrs = read_attrs(group)
            if method_attrs.get("share") != SHARE_DEFINITION:
                _abs_sum_shares(arrays)
            methods[name] = MethodImportance(method=name, attrs=method_attrs, **arrays)
        attrs = read_attrs(handle)
        listed = [m for m in (attrs.get("methods") or []) if m in methods]
        methods = {m: methods[m] for m in listed + sorted(set(methods) - set(listed))}
        fid = handle["fidelity"]
        curves = {name: {key: fid[name][key][()] for key in fid[name]} for name in fid}
        return ImportanceRecord(
            attrs=attrs,
            kept=np.asarray(handle["images/kept"][()], bool),
            methods=methods,
            fidelity_attrs=read_attrs(fid),
            fidelity=curves,
            maps_attrs=read_attrs(handle["maps"]),
            presence=np.asarray(handle["maps/presence"][()], np.float32) if maps else None,
            contribution=np.asarray(handle["maps/contribution"][()], np.float32) if maps else None,
            path=Path(path),
            subconcepts=_read_subconcepts(handle["subconcepts"], maps) if "subconcepts" in handle else None,
        )
