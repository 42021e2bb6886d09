"""Recursive sub-concepts against planted sub-types (the ``subtypes`` variant of :mod:`.synthetic`).

:func:`subtype_of_rows` labels every cached row (a feature-map position, patches mode) with the planted sub-type
covering its cell; :func:`purity` scores a grouping of rows against such labels (the contingency table's row
maxima over its total); :func:`split_report` gives, for a class factorised with ``--recursive``, the concept that
holds the sub-types, how mixed its strong rows are and how pure its sub-concepts are.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import synthetic as syn


def subtype_of_rows(cache, min_share: float = 0.25) -> np.ndarray:
    """The planted sub-type (1, 2, ...) of every row of a patches-mode cache: the sub-type covering at least
    ``min_share`` of the position's cell (the largest one), else 0."""
    cell = syn.IMAGE_SIZE // cache.grid[0]
    out = np.zeros(cache.n_rows, np.int64)
    masks: dict[int, np.ndarray] = {}
    for i, (image, (pi, pj)) in enumerate(zip(cache.row_image, cache.row_position)):
        if image not in masks:
            masks[image] = syn.load_mask(cache.images["path"][image], "subtypes")
        patch = masks[image][pi * cell:(pi + 1) * cell, pj * cell:(pj + 1) * cell]
        shares = [(patch == k).mean() for k in range(1, int(masks[image].max(initial=0)) + 2)]
        if shares and max(shares) >= min_share:
            out[i] = 1 + int(np.argmax(shares))
    return out


def purity(groups: np.ndarray, truth: np.ndarray) -> float:
    """Share of the rows whose group's majority label is their own label (NaN without rows)."""
    if len(groups) == 0:
        return float("nan")
    table = np.array([[np.sum((groups == g) & (truth == t)) for t in np.unique(truth)] for g in np.unique(groups)])
    return float(table.max(axis=1).sum() / table.sum())


def split_report(record, truth: np.ndarray) -> dict[str, Any]:
    """For a recursive concepts record and the sub-type of every row: the concept strongest on the planted rows
    (``parent``), whether it is the strongest on each sub-type (``merged``), the sub-type mix of its strong rows and
    the purity of its sub-concepts' argmax there (rows without a sub-type left out)."""
    U, tree = record.coefficients, record.tree
    planted = truth > 0
    parent = int(np.argmax(U[planted].mean(axis=0)))
    kinds = [t for t in np.unique(truth) if t > 0]
    merged = all(int(np.argmax(U[truth == t].mean(axis=0))) == parent for t in kinds)
    kids = np.flatnonzero(tree.parent == parent)
    rows = tree.rows[kids[0]] if len(kids) else np.zeros(0, np.int64)
    labels = truth[rows]
    split = np.stack([tree.coefficients[k] for k in kids], axis=1).argmax(axis=1) if len(kids) else labels
    keep = labels > 0
    return {"parent": parent, "merged": merged, "children": kids + record.n_concepts, "rows": int(len(rows)),
            "planted_rows": int(keep.sum()), "mix": {int(t): float(np.mean(labels[keep] == t)) for t in kinds},
            "parent_purity": purity(np.zeros(int(keep.sum())), labels[keep]),
            "purity": purity(split[keep], labels[keep]),
            "contingency": [[int(np.sum((split[keep] == j) & (labels[keep] == t))) for t in kinds]
                            for j in range(len(kids))]}
