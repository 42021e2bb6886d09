"""Concept recovery: do the learned concepts match the planted ones?

Inputs are the concept coefficients at every feature-map position of every image,
``U`` (n_images, H, W, r), the bank ``W`` (r, D) and the true per-pixel label maps
(n_images, S, S) (0 = background, k = planted concept k).

1. ``coverage``: the label maps are average-pooled onto the feature grid, giving for every
   position the fraction of its pixels covered by each label (rows sum to 1).
2. ``dominant_concept``: each position goes to the recovered concept that contributes most to
   its activation, ``argmax_j |U_pj| * ||W_j||`` (the norm of the concept's term in ``U W``),
   provided that strength reaches ``threshold`` times the largest strength anywhere in the class;
   weaker positions go to no concept (index r): the model barely responds there.
3. ``contingency``: ``C[j, l] = Σ_p [assign(p) = j] * coverage_l(p)`` — how much of label l the
   positions of concept j cover (soft counts); positions with no concept are left out.
4. ``iou[j, l] = C[j, l] / (|j| + |l| - C[j, l])`` with ``|j| = Σ_l C[j, l]`` (positions of j) and
   ``|l| = Σ_j C[j, l]`` (area of l in cells).  Planted concepts are matched one-to-one to recovered
   ones by the Hungarian algorithm on IoU (background included as a label, so that it can absorb
   a concept); ``recovery_iou`` is the mean matched IoU over the planted (non-background) labels
   present (an unmatched label counts 0).
5. ``purity = Σ_j max_l C[j, l] / Σ C``: the share of concept-assigned positions whose concept's
   majority label is their own label (cluster purity, many-to-one).
6. The *top concept* (largest importance) is labelled with the label it is matched to (or, when
   unmatched, its majority label ``argmax_l C[j*, l]``); ``top_is_key`` says whether that is the
   concept the class depends on. (The matched label, not the majority: a concept map spreads
   over the receptive field around its object, so its majority label is often the background.)
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import ConceptsError


def coverage(labels: np.ndarray, grid: tuple[int, int], n_labels: int) -> np.ndarray:
    """Fraction of each grid cell covered by each label: (n, S, S) ints -> (n, H, W, n_labels).

    Cell (i, j) spans pixel rows ``[floor(i*S/H), floor((i+1)*S/H))`` (and likewise for columns).
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    n, sh, sw = labels.shape
    gh, gw = int(grid[0]), int(grid[1])
    if gh > sh or gw > sw:
        raise ConceptsError(f"grid {grid} is finer than the masks {labels.shape[1:]}")
    if labels.max(initial=0) >= n_labels:
        raise ConceptsError(f"label {labels.max()} >= n_labels {n_labels}")
    onehot = (labels[..., None] == np.arange(n_labels)).astype(np.float64)  # (n, S, S, L)
    ys = np.floor(np.arange(gh + 1) * sh / gh).astype(int)
    xs = np.floor(np.arange(gw + 1) * sw / gw).astype(int)
    out = np.empty((n, gh, gw, n_labels))
    for i in range(gh):
        rows = onehot[:, ys[i]:ys[i + 1]]
        for j in range(gw):
            out[:, i, j] = rows[:, :, xs[j]:xs[j + 1]].mean(axis=(1, 2))
    return out


def concept_strength(U: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """``|U_pj| * ||W_j||``: the norm of concept j's term in the reconstruction at every position."""
    U = np.abs(np.asarray(U, dtype=np.float64))
    if W is None:
        return U
    norms = np.linalg.norm(np.asarray(W, dtype=np.float64), axis=1)
    return U * norms


def dominant_concept(U: np.ndarray, W: np.ndarray | None = None, threshold: float = 0.0) -> np.ndarray:
    """Index of the strongest concept at every position: (..., r) -> (...) ints.

    Positions whose strongest strength is below ``threshold * max strength`` get index r (no concept).
    """
    strength = concept_strength(U, W)
    r = strength.shape[-1]
    assign = np.argmax(strength, axis=-1)
    if threshold > 0 and strength.size:
        top = strength.max(axis=-1)
        assign = np.where(top >= threshold * strength.max(), assign, r)
    return assign


def contingency(assign: np.ndarray, cover: np.ndarray, n_concepts: int) -> np.ndarray:
    """``C[j, l] = Σ_p [assign(p) = j] cover(p, l)``: (r, L) soft counts (``assign == r``: left out)."""
    assign = np.asarray(assign).reshape(-1)
    cover = np.asarray(cover, dtype=np.float64).reshape(len(assign), -1)
    out = np.zeros((n_concepts + 1, cover.shape[1]))
    np.add.at(out, assign, cover)
    return out[:n_concepts]


def iou_matrix(C: np.ndarray, label_area: np.ndarray | None = None) -> np.ndarray:
    """IoU of every recovered concept region with every true label region from the contingency table.

    ``label_area`` (L,) is the area of each label in cells (default: the column sums of ``C``, which
    miss the positions assigned to no concept)."""
    C = np.asarray(C, dtype=np.float64)
    size_j = C.sum(axis=1, keepdims=True)
    size_l = C.sum(axis=0, keepdims=True) if label_area is None else np.asarray(label_area, float)[None]
    union = size_j + size_l - C
    return np.divide(C, union, out=np.zeros_like(C), where=union > 0)


def recovery_scores(C: np.ndarray, *, label_area: np.ndarray | None = None, background: int | None = 0,
                    top_concept: int | None = None, key_label: int | None = None,
                    min_area: float = 1e-9) -> dict[str, Any]:
    """Hungarian-matched IoU, purity and top-concept check from a contingency table ``C`` (r, L).

    Returns ``recovery_iou`` (mean matched IoU over present non-background labels), ``purity``,
    ``per_label_iou`` {label: IoU}, ``key_iou`` (the key label's), ``pairs`` [(concept, label)], and,
    when ``top_concept`` is given, ``top_label`` (its matched label, else its majority label, -1 if it
    covers no position) and
    ``top_is_key`` (``top_label == key_label``).
    """
    C = np.asarray(C, dtype=np.float64)
    area = C.sum(axis=0) if label_area is None else np.asarray(label_area, dtype=np.float64)
    iou = iou_matrix(C, area)
    rows, cols = linear_sum_assignment(-iou)
    match = {int(l): (int(j), float(iou[j, l])) for j, l in zip(rows, cols)}
    planted = [l for l in range(C.shape[1]) if area[l] > min_area and l != background]
    per_label = {l: match[l][1] if l in match else 0.0 for l in planted}
    total = C.sum()
    out: dict[str, Any] = {
        "recovery_iou": float(np.mean(list(per_label.values()))) if per_label else float("nan"),
        "purity": float(C.max(axis=1).sum() / total) if total > 0 else float("nan"),
        "per_label_iou": per_label,
        "pairs": sorted((j, l) for l, (j, _) in match.items()),
        "key_iou": float("nan") if key_label is None else (match[key_label][1] if key_label in match else 0.0),
    }
    if top_concept is not None:
        by_concept = {j: l for l, (j, _) in match.items() if iou[j, l] > 0}
        if top_concept in by_concept:
            top_label = by_concept[top_concept]
        else:
            top_label = int(np.argmax(C[top_concept])) if C[top_concept].sum() > 0 else -1
        out["top_label"] = top_label
        out["top_is_key"] = None if key_label is None else bool(top_label == key_label)
        if key_label is not None and key_label in match:
            out["key_concept"] = match[key_label][0]
    return out


def concept_recovery(U: np.ndarray, W: np.ndarray | None, labels: np.ndarray, n_labels: int, *,
                     importance: np.ndarray | None = None, key_label: int | None = None,
                     background: int | None = 0, threshold: float = 0.1) -> dict[str, Any]:
    """Recovery of planted concepts from coefficient maps ``U`` (n, H, W, r) and label maps (n, S, S)."""
    U = np.asarray(U)
    if U.ndim != 4:
        raise ConceptsError(f"coefficient maps must be (n_images, H, W, r); got {U.shape}")
    cover = coverage(labels, U.shape[1:3], n_labels)
    assign = dominant_concept(U, W, threshold)
    C = contingency(assign, cover, U.shape[-1])
    area = cover.reshape(-1, n_labels).sum(axis=0)
    top = int(np.argmax(importance)) if importance is not None else None
    out = recovery_scores(C, label_area=area, background=background, top_concept=top, key_label=key_label)
    out["contingency"] = C
    return out
