"""``RUN/concepts/<class>.h5`` (stage 2): the contract, its writer and its reader (:func:`read_concepts`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .hdf5 import ArtefactWriter, check_free_space, identity, read_attrs, reading, write_attrs
from .spec import COMMON_ATTRIBUTES, FileSpec, Item

CONCEPTS = FileSpec(
    stage="factorize",
    path="RUN/concepts/<class>.h5",
    summary="The concept bank of one class and the coefficients of every cached row.",
    datasets=(
        Item("components", "(r, D) float32", "the concept bank W, concepts ordered by total coefficient mass "
                                             "(PCA: explained variance)"),
        Item("coefficients", "(R, r) float32", "U of every cached row, in row order"),
        Item("image_coefficients", "(n_images, r) float32", "the coefficients of every image's pooled row (its "
                                                            "presence of each concept; NaN for skipped images), "
                                                            "also for the images without maps", required=False),
        Item("state/<name>", "array", "what `load_concepts` needs to rebuild the estimator (PCA `mean_`, ICA "
                                      "`unmixing_`, k-means `scale_`, dictionary `lambda_` ...)", required=False),
        Item("state/atoms", "(r,) int64", "dataset scope: the class's concepts as indices into the shared "
                                          "dictionary", required=False),
        Item("state/mass", "(K,) float64", "dataset scope: the class's coefficient mass on every atom",
             required=False),
        Item("tree/parent", "(S,) int32", "sub-concepts (`--recursive`): node id of each one's parent (concept k is "
                                          "node k, sub-concept i is node r + i, in breadth-first order)",
             required=False),
        Item("tree/depth", "(S,) int32", "1 for a concept's sub-concepts, 2 for theirs ...", required=False),
        Item("tree/index", "(S,) int32", "index among its siblings (siblings ordered by coefficient mass)",
             required=False),
        Item("tree/components", "(S, D') float32", "the sub-concept vectors (D' channels of the sub-layer)",
             required=False),
        Item("tree/threshold", "(S,) float32", "the parent's coefficient at the percentile: the parent's rows at or "
                                               "above it were factorised again", required=False),
        Item("tree/rel_error_before", "(S,) float32", "relative error of those rows with the parent's bank (NaN at "
                                                      "another layer)", required=False),
        Item("tree/rel_error_after", "(S,) float32", "the same with the sub-concepts of the parent", required=False),
        Item("tree/row_offsets", "(S+1,) int64", "node i's rows are `tree/rows[row_offsets[i]:row_offsets[i+1]]`",
             required=False),
        Item("tree/rows", "(M,) int32", "the cached rows each sub-concept was fitted on (its parent's strong rows)",
             required=False),
        Item("tree/coefficients", "(M,) float32", "the sub-concept's coefficient on each of those rows",
             required=False),
        Item("tree/state/<name>", "(S, ...) array", "the sub-bank's estimator state, one entry per node (siblings "
                                                     "share it)", required=False),
    ),
    attributes=COMMON_ATTRIBUTES + (
        Item("method", "str", "registry name of the concept method"),
        Item("params", "JSON", "the estimator's parameters"),
        Item("n_concepts", "int", "r"),
        Item("seed", "int", "random seed"),
        Item("rel_error", "float", "relative l2 error ||A - UW|| / ||A|| over every row"),
        Item("fit_rel_error", "float", "the same on the rows the bank was fitted on"),
        Item("sparsity_l0", "float", "share of zero coefficients"),
        Item("hoyer", "float", "mean Hoyer sparsity of the rows of U"),
        Item("dead", "int", "concepts unused by every row"),
        Item("dead_concepts", "JSON", "their indices"),
        Item("n_iter", "int", "iterations of the solver"),
        Item("converged", "bool", "whether the solver met its tolerance"),
        Item("n_rows", "int", "R"),
        Item("n_fit_rows", "int", "rows the bank was fitted on"),
        Item("fit_rows", "str", "'all', or 'sample' when the class exceeded `max_rows` (an exact fit on a uniform "
                                "sample, then every row's coefficients by streaming)"),
        Item("ordering", "str", "how the concepts are ordered"),
        Item("device", "str", "where the fit ran"),
        Item("seconds", "float", "wall time of the stage for the class"),
        Item("source_config_hash", "str", "config hash of the activations file"),
        Item("scope", "str", "'class' (a bank fitted on this class) or 'dataset' (a view of RUN/dictionary/shared.h5)"),
        Item("dictionary_size", "int", "dataset scope: K, the size of the shared dictionary"),
        Item("model, weights, layer, ...", "", "the provenance attributes of the activations file, copied"),
        Item("tree/: percentile, depth, sub_concepts, layer, method, n_nodes, bound, not_split, seconds", "",
             "the recursive step: its settings, the sub-concepts' layer, the tree size and its bound "
             "r x (s + s^2 + ... + s^depth), the nodes too small to split, the seconds it added"),
    ),
    notes=(
        "Sub-concepts (`concepts factorize --recursive`): each concept's rows at or above the percentile of its "
        "coefficient are factorised again into `sub_concepts` sub-concepts (at the same layer, or at `sub_layer`, an "
        "earlier cached layer of the same crops), and so on to `depth` levels; `read_concepts(...).tree` reads them, "
        "`RunFolder.concept_tree(class)` joins them with their importance.",
    ),
)

#: the per-node arrays of ``tree/`` (besides the rows, stored flat with offsets)
TREE_ARRAYS = {"parent": np.int32, "depth": np.int32, "index": np.int32, "components": np.float32,
               "threshold": np.float32, "rel_error_before": np.float32, "rel_error_after": np.float32}


@dataclass
class TreeArrays:
    """The sub-concepts of a class as stored in ``tree/`` (S nodes; node ids r .. r+S-1)."""

    parent: np.ndarray
    depth: np.ndarray
    index: np.ndarray
    components: np.ndarray
    threshold: np.ndarray
    rel_error_before: np.ndarray
    rel_error_after: np.ndarray
    rows: list[np.ndarray]  # per node: the cached rows it was fitted on
    coefficients: list[np.ndarray]  # per node: its coefficient on those rows
    state: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (S, ...) per node
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return int(len(self.parent))


@dataclass
class ConceptsRecord:
    """What a concepts file holds (``coefficients`` is None when not read)."""

    path: Path
    attrs: dict[str, Any]
    components: np.ndarray
    state: dict[str, np.ndarray] = field(default_factory=dict)
    coefficients: np.ndarray | None = None
    image_coefficients: np.ndarray | None = None  # (n_images, r); None for files written before 0.3
    tree: TreeArrays | None = None  # the sub-concepts (``--recursive``), None without

    @property
    def identity(self) -> str:
        return identity(self.attrs)

    @property
    def method(self) -> str:
        return str(self.attrs.get("method", "nmf"))

    @property
    def n_concepts(self) -> int:
        return int(self.components.shape[0])


class ConceptsWriter(ArtefactWriter):
    """Writes one concepts file; coefficients may be written block by block (streamed classes)."""

    def __init__(self, path: str | os.PathLike, *, n_rows: int, n_concepts: int):
        super().__init__(path)
        self.n_rows, self.n_concepts = int(n_rows), int(n_concepts)

    def _create(self) -> None:
        r = max(self.n_concepts, 1)
        check_free_space(self.path, int(self.n_rows * r * 4 * 1.05) + (1 << 20))
        self._coefficients = self.handle.create_dataset(
            "coefficients", shape=(self.n_rows, self.n_concepts), dtype=np.float32,
            chunks=(max(1, min(self.n_rows, 2 ** 20 // r)), self.n_concepts) if self.n_rows else None)

    def write_components(self, components: np.ndarray) -> None:
        self.handle.create_dataset("components", data=np.asarray(components, np.float32))

    def write_coefficients(self, offset: int, block: np.ndarray) -> None:
        self._coefficients[offset:offset + len(block)] = np.asarray(block, np.float32)
        self.handle.flush()

    def write_image_coefficients(self, coefficients: np.ndarray) -> None:
        """The coefficients (n_images, r) of every image's pooled row (NaN rows for skipped images)."""
        self.handle.create_dataset("image_coefficients", data=np.asarray(coefficients, np.float32))

    def coefficients(self) -> np.ndarray:
        """The coefficients written so far (R, r), read back (the recursive step needs every row's)."""
        return np.asarray(self._coefficients[()], np.float32)

    def write_tree(self, tree: TreeArrays) -> None:
        """The sub-concepts (``tree/``), before :meth:`finish`."""
        group = self.handle.create_group("tree")
        for name, dtype in TREE_ARRAYS.items():
            group.create_dataset(name, data=np.asarray(getattr(tree, name), dtype))
        sizes = [len(r) for r in tree.rows]
        group.create_dataset("row_offsets", data=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        flat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))
        group.create_dataset("rows", data=flat(tree.rows, np.int32))
        group.create_dataset("coefficients", data=flat(tree.coefficients, np.float32))
        state = group.create_group("state")
        for name, value in tree.state.items():
            state.create_dataset(name, data=np.asarray(value))
        write_attrs(group, tree.attrs)

    def finish(self, *, state: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
        group = self.handle.create_group("state")
        for name, value in state.items():
            group.create_dataset(name, data=np.asarray(value))
        write_attrs(self.handle, attrs)
        self._finished()


def read_concepts(path: str | os.PathLike, *, coefficients: bool = True) -> ConceptsRecord:
    """Read a concepts file (the coefficients only when asked for)."""
    with reading(path, CONCEPTS) as handle:
        return ConceptsRecord(
            path=Path(path),
            attrs=read_attrs(handle),
            components=np.asarray(handle["components"][()], np.float32),
            state={k: v[()] for k, v in handle["state"].items()} if "state" in handle else {},
            coefficients=np.asarray(handle["coefficients"][()], np.float32) if coefficients else None,
            image_coefficients=np.asarray(handle["image_coefficients"][()], np.float32)
            if "image_coefficients" in handle else None,
            tree=_read_tree(handle["tree"]) if "tree" in handle else None,
        )


def _read_tree(group) -> TreeArrays:
    offsets = group["row_offsets"][()]
    rows, coefficients = group["rows"][()], group["coefficients"][()]
    cut = [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]
    return TreeArrays(**{name: np.asarray(group[name][()], dtype) for name, dtype in TREE_ARRAYS.items()},
                      rows=[rows[c].astype(np.int64) for c in cut], coefficients=[coefficients[c] for c in cut],
                      state={k: v[()] for k, v in group["state"].items()} if "state" in group else {},
                      attrs=read_attrs(group))
