"""``RUN/fviz/<class>.h5`` (feature visualisation): the contract, its writer and its reader (:func:`read_fviz`).

What the atlas needs is :meth:`FvizRecord.concept_images` and :meth:`FvizRecord.concept_transparency` (row k =
concept k of the class's bank), :attr:`FvizRecord.logit_image` and, for a recursive concepts file,
:meth:`FvizRecord.subconcept` (the image of a sub-concept, by node id; :class:`FvizSubconcepts`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtefactError
from .hdf5 import atomic_artefact, identity, read_attrs, read_strings, reading, string_dataset, write_attrs
from .spec import COMMON_ATTRIBUTES, FileSpec, Item

FVIZ = FileSpec(
    stage="fviz",
    path="RUN/fviz/<class>.h5",
    summary="MACO feature visualisations of one class: an image per concept of its bank and one for its logit, "
            "their transparency maps and how much each excites its target.",
    datasets=(
        Item("images", "(n, S, S, 3) uint8", "the visualisations (RGB); row i is the image of `targets[i]`"),
        Item("transparency", "(n, S, S) float16", "sum over steps of |dL/dx| (over colours), divided by its maximum: "
                                                 "where the objective looked (MACO's transparency map)"),
        Item("targets", "(n,) str", "'concept:<k>' (concept k of the bank) or 'logit:<index>' (the class logit)"),
        Item("objective", "(n,) float32", "each image's objective for its own target on the evaluation crops (no "
                                          "noise): dot(a, v) * max(cos(a, v), cos_floor)^power, or the logit"),
        Item("curve", "(n, steps) float32", "mean objective over the random crops of each step (noise included)"),
        Item("coefficients", "(n, r) float32", "the concept coefficients of each image: the bank's transform of its "
                                               "activation pooled over the evaluation crops"),
        Item("percentile", "(n,) float32", "concept images: the share (%) of the class's rows whose coefficient of "
                                           "that concept is below the image's (NaN for the logit image)"),
        Item("logit", "(n,) float32", "the class logit of each image on the evaluation crops"),
        Item("reference/p99", "(r,) float32", "the 99th percentile of each concept's coefficient over the class's "
                                              "rows (crops, or positions in patches mode)"),
        Item("spectrum/magnitude", "(3, M, M//2+1) float32", "the fixed magnitude spectrum (orthonormal rfft2, "
                                                             "decorrelated colours, DC = 0) before resizing to S"),
        Item("spectrum/mean", "(3,) float32", "mean colour added to every image"),
        Item("spectrum/color", "(3, 3) float32", "colour matrix: image = mean + color @ irfft2(magnitude e^{i phase})"),
        Item("subconcepts/node", "(m,) int32", "sub-concepts (a recursive concepts file, `subconcepts: true`): the "
                                               "node id of each image (as in the concepts file's `tree/`)",
             required=False),
        Item("subconcepts/parent", "(m,) int32", "the node's parent", required=False),
        Item("subconcepts/index", "(m,) int32", "its index among its siblings: its column of `subconcepts/coefficients`",
             required=False),
        Item("subconcepts/images", "(m, S, S, 3) uint8", "the visualisation of each sub-concept (one MACO run per "
                                                         "group of siblings)", required=False),
        Item("subconcepts/transparency", "(m, S, S) float16", "its transparency map, as `transparency`",
             required=False),
        Item("subconcepts/objective", "(m,) float32", "its objective on the evaluation crops, at the sub-concepts' "
                                                      "layer", required=False),
        Item("subconcepts/curve", "(m, steps) float32", "as `curve`", required=False),
        Item("subconcepts/coefficients", "(m, s) float32", "the siblings' coefficients of the image: the sibling "
                                                           "bank's transform of its pooled activation (s: the "
                                                           "largest group; NaN beyond a group's size)",
             required=False),
        Item("subconcepts/percentile", "(m,) float32", "the share (%) of the parent's strong rows (the rows the "
                                                       "siblings were fitted on) whose coefficient of the sub-concept "
                                                       "is below the image's", required=False),
        Item("subconcepts/p99", "(m,) float32", "the 99th percentile of the sub-concept's coefficient over those "
                                               "rows", required=False),
        Item("subconcepts/excited", "(m,) bool", "own coefficient above `subconcepts/p99` and the largest of the "
                                                 "siblings' coefficients", required=False),
        Item("subconcepts/logit", "(m,) float32", "the class logit of each image (NaN where not measured: another "
                                                  "head than the model's at another layer)", required=False),
    ),
    attributes=COMMON_ATTRIBUTES + (
        Item("class_name, class_index", "", "as in the activations file"),
        Item("steps, lr, crops, crop_min, crop_max, noise, image_size, power, cos_floor, logit, seed", "",
             "the settings (`fviz` section)"),
        Item("spectrum", "str", "'images' (estimated on the class's photos) or 'file:<path>'"),
        Item("spectrum_sha256", "str", "sha256 of the spectrum and colour statistics used"),
        Item("spectrum_images", "int", "photos the spectrum (or its colours and energy) was estimated on"),
        Item("eval_scale, eval_crops", "", "side (fraction of the image) and number of the evaluation crops (a "
                                           "grid tiling the image)"),
        Item("n_concepts, n_targets", "int", "r, and n (r, plus 1 with the logit)"),
        Item("excited", "int", "concepts whose image passes both checks: own coefficient above `reference/p99` and "
                               "the largest of its coefficients"),
        Item("n_subconcepts, subconcepts_excited", "int", "sub-concept images (m), and those that pass both checks "
                                                          "against their siblings (absent: no sub-concept images)"),
        Item("subconcepts_layer", "str", "the layer the sub-concepts were visualised at (the concepts' or "
                                         "`--sub-layer`)"),
        Item("concepts_method", "str", "the concept method of the concepts file"),
        Item("source_config_hash", "str", "config hash of the concepts file"),
        Item("model, weights, weights_sha256, checkpoint, layer, layout, grid, n_prefix, preprocessing", "",
             "the provenance of the activations file, copied"),
        Item("device, seconds", "", "where it ran, and the wall time of the class"),
    ),
    notes=(
        "Images are periodic textures (made by an inverse FFT; the crops wrap around the borders, so every pixel is "
        "optimised alike), rolled so that the peak of their smoothed transparency map is at the centre. "
        "`read_fviz(path).concept_images()` gives (r, S, S, 3) uint8 in bank order, "
        "`.concept_transparency()` (r, S, S) float32 in [0, 1], `.logit_image` the (image, transparency) pair of "
        "the class logit or None. For a recursive concepts file, every sub-concept has an image too (`subconcepts/`; "
        "fviz's `subconcepts` setting, on by default, `--no-subconcepts`): one MACO run per group of siblings, at the "
        "sub-concepts' layer, checked against the siblings' coefficients on the rows they were fitted on; "
        "`.subconcept(node)` gives its (image, transparency) pair, `.subconcepts` the arrays. Files without the "
        "group (made before it, or without sub-concepts) read with `.subconcepts = None`.",
    ),
)


@dataclass
class FvizSubconcepts:
    """The sub-concept images of a feature-visualisation file (``subconcepts/``; m images, one per node)."""

    node: np.ndarray  # (m,) int
    parent: np.ndarray  # (m,) int
    index: np.ndarray  # (m,) int: the column of its own coefficient
    images: np.ndarray  # (m, S, S, 3) uint8 (empty when read without images)
    transparency: np.ndarray  # (m, S, S) float32
    objective: np.ndarray  # (m,)
    curve: np.ndarray  # (m, steps)
    coefficients: np.ndarray  # (m, s) the siblings' coefficients, NaN-padded
    percentile: np.ndarray  # (m,)
    p99: np.ndarray  # (m,)
    excited: np.ndarray  # (m,) bool
    logit: np.ndarray  # (m,)

    ARRAYS = ("node", "parent", "index", "objective", "curve", "coefficients", "percentile", "p99", "excited", "logit")

    def __len__(self) -> int:
        return int(len(self.node))

    def row(self, node: int) -> int | None:
        """The row of node ``node``'s image (None: no image of it)."""
        where = np.flatnonzero(np.asarray(self.node) == int(node))
        return int(where[0]) if len(where) else None

    def excites(self) -> np.ndarray:
        """(m,) bool, recomputed from the measures: own coefficient above its p99 and the largest of the
        siblings'."""
        own = self.coefficients[np.arange(len(self)), self.index.astype(np.int64)]
        best = np.nanargmax(np.where(np.isnan(self.coefficients), -np.inf, self.coefficients), axis=1) \
            if len(self) else np.zeros(0, np.int64)
        return (own > self.p99) & (best == self.index)


@dataclass
class FvizRecord:
    """What a feature-visualisation file holds (arrays straight from the file)."""

    attrs: dict[str, Any]
    images: np.ndarray  # (n, S, S, 3) uint8
    transparency: np.ndarray  # (n, S, S) float32 in [0, 1]
    targets: list[str]
    objective: np.ndarray  # (n,)
    curve: np.ndarray  # (n, steps)
    coefficients: np.ndarray  # (n, r)
    percentile: np.ndarray  # (n,)
    logit: np.ndarray  # (n,)
    p99: np.ndarray  # (r,)
    spectrum: dict[str, np.ndarray] = field(default_factory=dict)  # magnitude, mean, color
    path: Path | None = None
    subconcepts: FvizSubconcepts | None = None  # the sub-concepts' images (None: the file has none)

    @property
    def identity(self) -> str:
        return identity(self.attrs)

    @property
    def n_concepts(self) -> int:
        return int(len(self.p99))

    def _row(self, name: str) -> int | None:
        return self.targets.index(name) if name in self.targets else None

    def concept_rows(self) -> np.ndarray:
        """Row of the image of each concept k (bank order); -1 for a concept without an image."""
        return np.array([self._row(f"concept:{k}") if f"concept:{k}" in self.targets else -1
                         for k in range(self.n_concepts)], np.int64)

    def _in_bank_order(self, values: np.ndarray) -> np.ndarray:
        rows = self.concept_rows()
        if (rows < 0).any():
            missing = np.flatnonzero(rows < 0).tolist()
            raise ArtefactError(f"{self.path}: no visualisation of concept(s) {missing}")
        return values[rows]

    def concept_images(self) -> np.ndarray:
        """(r, S, S, 3) uint8: row k is the visualisation of concept k."""
        return self._in_bank_order(self.images)

    def concept_transparency(self) -> np.ndarray:
        """(r, S, S) float32 in [0, 1]: row k is the transparency map of concept k's visualisation."""
        return self._in_bank_order(self.transparency)

    def concept(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (S, S, 3) uint8, transparency (S, S) float32)`` of concept k."""
        row = self._row(f"concept:{int(k)}")
        if row is None:
            raise ArtefactError(f"{self.path}: no visualisation of concept {k}")
        return self.images[row], self.transparency[row]

    @property
    def logit_image(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(image, transparency)`` of the class logit, or None when it was not made."""
        row = next((i for i, t in enumerate(self.targets) if t.startswith("logit:")), None)
        return None if row is None else (self.images[row], self.transparency[row])

    def subconcept(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image (S, S, 3) uint8, transparency (S, S) float32)`` of sub-concept ``node`` (its node id)."""
        row = None if self.subconcepts is None else self.subconcepts.row(node)
        if row is None or row >= len(self.subconcepts.images):
            raise ArtefactError(f"{self.path}: no visualisation of sub-concept node {node}")
        return self.subconcepts.images[row], self.subconcepts.transparency[row]

    def excites(self) -> np.ndarray:
        """(r,) bool: concept k's image has its own coefficient above the 99th percentile of the class's rows and
        as the largest of its coefficients."""
        rows = self.concept_rows()
        out = np.zeros(self.n_concepts, bool)
        for k, row in enumerate(rows):
            if row >= 0:
                coef = self.coefficients[row]
                out[k] = bool(coef[k] > self.p99[k] and int(np.argmax(coef)) == k)
        return out


def write_fviz(path: str | os.PathLike, record: FvizRecord) -> Path:
    """Write a feature-visualisation file from a complete record (atomically; images compressed)."""
    n = len(record.targets)
    with atomic_artefact(path) as handle:
        write_attrs(handle, record.attrs)
        size = record.images.shape[1:3] if n else (0, 0)
        chunks = (1, *size, 3) if n else None
        handle.create_dataset("images", data=np.asarray(record.images, np.uint8), chunks=chunks,
                              compression="gzip" if n else None, compression_opts=4 if n else None)
        handle.create_dataset("transparency", data=np.asarray(record.transparency, np.float16),
                              chunks=(1, *size) if n else None, compression="gzip" if n else None,
                              compression_opts=4 if n else None)
        string_dataset(handle, "targets", list(record.targets))
        for name in ("objective", "curve", "coefficients", "percentile", "logit"):
            handle.create_dataset(name, data=np.asarray(getattr(record, name), np.float32))
        handle.create_dataset("reference/p99", data=np.asarray(record.p99, np.float32))
        for name, value in record.spectrum.items():
            handle.create_dataset(f"spectrum/{name}", data=np.asarray(value, np.float32))
        if record.subconcepts is not None:
            _write_subconcepts(handle.create_group("subconcepts"), record.subconcepts)
    return Path(path)


def _write_subconcepts(group, sub: FvizSubconcepts) -> None:
    m = len(sub)
    size = sub.images.shape[1:3] if m else (0, 0)
    packed = dict(compression="gzip", compression_opts=4) if m else {}
    group.create_dataset("images", data=np.asarray(sub.images, np.uint8).reshape(m, *size, 3),
                         chunks=(1, *size, 3) if m else None, **packed)
    group.create_dataset("transparency", data=np.asarray(sub.transparency, np.float16).reshape(m, *size),
                         chunks=(1, *size) if m else None, **packed)
    types = {"node": np.int32, "parent": np.int32, "index": np.int32, "excited": bool}
    for name in FvizSubconcepts.ARRAYS:
        group.create_dataset(name, data=np.asarray(getattr(sub, name), types.get(name, np.float32)))


def _read_subconcepts(group, images: bool) -> FvizSubconcepts:
    shape = group["images"].shape
    pictures = np.asarray(group["images"][()], np.uint8) if images else np.zeros((0, *shape[1:]), np.uint8)
    alpha = np.asarray(group["transparency"][()], np.float32) if images else np.zeros((0, *shape[1:3]), np.float32)
    arrays = {name: group[name][()] for name in FvizSubconcepts.ARRAYS}
    arrays["excited"] = np.asarray(arrays["excited"], bool)
    return FvizSubconcepts(images=pictures, transparency=alpha, **arrays)


def read_fviz(path: str | os.PathLike, *, images: bool = True) -> FvizRecord:
    """Read a feature-visualisation file (``images=False``: the measures only, empty image arrays)."""
    with reading(path, FVIZ) as handle:
        if images:
            pictures = np.asarray(handle["images"][()], np.uint8)
            alpha = np.asarray(handle["transparency"][()], np.float32)
        else:
            shape = handle["images"].shape
            pictures = np.zeros((0, *shape[1:]), np.uint8)
            alpha = np.zeros((0, *shape[1:3]), np.float32)
        spectrum = {name: handle[f"spectrum/{name}"][()] for name in ("magnitude", "mean", "color")
                    if f"spectrum/{name}" in handle}
        return FvizRecord(
            attrs=read_attrs(handle), images=pictures, transparency=alpha, targets=read_strings(handle["targets"]),
            objective=handle["objective"][()], curve=handle["curve"][()], coefficients=handle["coefficients"][()],
            percentile=handle["percentile"][()], logit=handle["logit"][()], p99=handle["reference/p99"][()],
            spectrum=spectrum, path=Path(path),
            subconcepts=_read_subconcepts(handle["subconcepts"], images) if "subconcepts" in handle else None)
