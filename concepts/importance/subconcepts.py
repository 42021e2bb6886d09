"""Stage 3 for sub-concepts: the importance of every sub-concept where its parent is (:func:`subconcept_pass`).

The importance stage works on feature-map positions, the tree on the cached rows (crops or positions), so "the
parent's rows" are defined again on positions, with the tree's own rule: a concept's positions are the positions
of the kept images whose coefficient is positive and at or above the tree's percentile of that coefficient over
all positions of the class; a sub-concept's positions are, among its parent's positions, those where its own
coefficient passes the same percentile over its parent's positions. (In patches mode rows are positions, and these
are the rows the sub-concepts were fitted on, up to the coefficients of ``transform``.) When the sub-concepts live
at another layer, a concept's positions are carried over to that layer's grid (nearest position).

At a parent's positions the activations ``A`` of the sub-concepts' layer become ``(S ⊙ m) V + (A − S V)`` (``S`` the
sub-coefficients, ``V`` the sub-concepts); every other position keeps ``A``: so with ``m = 1`` the model sees its
own activations and each mask removes one sub-concept from its parent's positions only. The methods of the
importance settings score the masks on the class logit through ``h`` of that layer (closed forms for a linear head).
Per image, NaN where the parent has no position; class importance: the mean over the other images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..schema import SubconceptImportance
from .methods import make_method


@dataclass
class SubContext:
    """What scoring needs: the sub-concepts' layer cache and head, the images, the class's coefficients."""

    cache: Any  # ActivationCache of the sub-concepts' layer
    blocks: list[np.ndarray]  # image indices per block (the kept images, in order)
    head: Any
    linear: Any
    class_index: int
    device: Any
    U: np.ndarray  # (n_kept, N, r) the class's coefficients at the positions of the concepts' layer
    main_grid: tuple[int, int]
    estimators: dict[int, Any] = field(default_factory=dict)  # parent node -> its children's estimator


def groups_of(parent: np.ndarray, depth: np.ndarray, r: int) -> list[tuple[int, np.ndarray, int]]:
    """``(parent node, child node ids, depth)`` of every group of siblings, in tree order."""
    out: list[tuple[int, np.ndarray, int]] = []
    for i, p in enumerate(parent.tolist()):
        if out and out[-1][0] == p:
            out[-1] = (p, np.append(out[-1][1], r + i), out[-1][2])
        else:
            out.append((p, np.array([r + i]), int(depth[i])))
    return out


def strong_positions(coef: np.ndarray, within: np.ndarray | None, percentile: float) -> tuple[np.ndarray, float]:
    """The positions (mask of ``coef``'s shape) whose coefficient is positive and at or above the percentile of
    the coefficients over ``within`` (default: every position); and that threshold."""
    values = coef[within] if within is not None else coef.ravel()
    threshold = float(np.percentile(values, percentile)) if values.size else 0.0
    mask = (coef >= threshold) & (coef > 0)
    return (mask & within if within is not None else mask), threshold


def map_positions(mask: np.ndarray, grid: tuple[int, int], to: tuple[int, int]) -> np.ndarray:
    """A mask (n, H*W) of positions on ``grid`` carried to the grid ``to`` (each position takes the nearest)."""
    if tuple(grid) == tuple(to):
        return mask
    rows = np.minimum(((np.arange(to[0]) + 0.5) * grid[0] / to[0]).astype(int), grid[0] - 1)
    cols = np.minimum(((np.arange(to[1]) + 0.5) * grid[1] / to[1]).astype(int), grid[1] - 1)
    return mask.reshape(-1, *grid)[:, rows][:, :, cols].reshape(len(mask), -1)


def _score_block(ctx: SubContext, methods: dict, estimator, A: np.ndarray, mask: np.ndarray, prefix):
    """Sub-coefficients (b, N, s) of one block of images and every method's per-image importances (b, s)."""
    V = np.asarray(estimator.components_, np.float32)
    b, N, D = A.shape
    S = np.zeros((b, N, V.shape[0]), np.float32)
    if mask.any():
        S[mask] = np.asarray(estimator.transform(A[mask]), np.float32)
    residual = A - S @ V
    empty = ~mask.any(axis=1)
    scores = {}
    for name, method in methods.items():
        result = method.attribute(S, V, ctx.head, ctx.class_index, linear_head=ctx.linear, residual=residual,
                                  prefix=prefix)
        values = np.asarray(result.per_image, np.float64)
        values[empty] = np.nan
        scores[name] = values
    return S, scores


def _level_masks(ctx: SubContext, groups, coef: dict, masks: dict, percentile: float, r: int, grid) -> dict:
    """Each group's parent positions (n_kept, N) at the sub-concepts' grid, and its threshold."""
    out = {}
    for parent, _, _ in groups:
        if parent < r:
            mask, threshold = strong_positions(ctx.U[..., parent], None, percentile)
            mask = map_positions(mask, ctx.main_grid, grid)
        else:
            mask, threshold = strong_positions(coef[parent], masks[parent], percentile)
        out[parent] = (mask, threshold)
    return out


def subconcept_pass(ctx: SubContext, tree, r: int, settings, parent_share: dict[str, np.ndarray],
                    bar=None) -> SubconceptImportance:
    """The importances of every node of ``tree`` (the concepts file's sub-concepts) for the methods of
    ``settings``; ``parent_share``: method -> the class-level share of the r concepts."""
    grid = tuple(ctx.cache.grid)
    percentile = float(tree.attrs.get("percentile", 90.0))
    groups = groups_of(tree.parent, tree.depth, r)
    common = dict(exact=settings.exact, batch_size=settings.batch_size, device=ctx.device, progress=False)
    methods = {name: make_method(name, designs=settings.designs, sampler=settings.sampler,
                                 estimator=settings.estimator, seed=settings.seed, **common)
               for name in settings.methods}
    n_kept, S_total = sum(len(b) for b in ctx.blocks), tree.n_nodes
    per_image = {name: np.full((n_kept, S_total), np.nan) for name in methods}
    coef, masks, thresholds = {}, {}, np.zeros(S_total, np.float32)
    counts = np.zeros(S_total, np.int32)
    for depth in sorted({g[2] for g in groups}):
        level = [g for g in groups if g[2] == depth]
        found = _level_masks(ctx, level, coef, masks, percentile, r, grid)
        for parent, nodes, _ in level:
            for node in nodes:
                masks[int(node)] = found[parent][0]
                coef[int(node)] = np.zeros((n_kept, grid[0] * grid[1]), np.float32)
            thresholds[nodes - r], counts[nodes - r] = found[parent][1], int(found[parent][0].sum())
        offset = 0
        for idx in ctx.blocks:
            A, prefix = ctx.cache.maps(idx), ctx.cache.prefix(idx)
            rows = slice(offset, offset + len(idx))
            for parent, nodes, _ in level:
                S, scores = _score_block(ctx, methods, ctx.estimators[parent], A, found[parent][0][rows], prefix)
                for j, node in enumerate(nodes):
                    coef[int(node)][rows] = S[..., j]
                for name, values in scores.items():
                    per_image[name][rows, nodes - r] = values
            offset += len(idx)
            if bar is not None:
                bar.update(len(idx))
    return _result(ctx, tree, r, groups, per_image, parent_share, coef, thresholds, counts, percentile, grid)


def _result(ctx, tree, r, groups, per_image, parent_share, coef, thresholds, counts, percentile, grid):
    arrays = {}
    for name, values in per_image.items():
        with np.errstate(invalid="ignore"):
            mean = np.array([np.nanmean(col) if np.isfinite(col).any() else np.nan for col in values.T])
        of_parent, share = np.full(len(mean), np.nan), np.full(len(mean), np.nan)
        for parent, nodes, _ in groups:  # tree order: a parent's share is known before its children's
            total = np.nansum(np.abs(mean[nodes - r]))  # signed shares of the absolute sum (as the concepts')
            of_parent[nodes - r] = mean[nodes - r] / total if total > 1e-12 else np.nan
            base = parent_share[name][parent] if parent < r else share[parent - r]
            share[nodes - r] = base * of_parent[nodes - r]
        arrays[name] = {"per_image": values, "class_importance": mean, "share_of_parent": of_parent, "share": share}
    n_kept = len(next(iter(per_image.values()))) if per_image else 0
    presence = np.stack([coef[r + i] for i in range(tree.n_nodes)], axis=1) if tree.n_nodes else \
        np.zeros((n_kept, 0, grid[0] * grid[1]), np.float32)
    return SubconceptImportance(
        node=np.arange(r, r + tree.n_nodes), threshold=thresholds, n_positions=counts, methods=arrays,
        presence=presence.reshape(n_kept, tree.n_nodes, *grid),
        attrs={"rule": "positions whose parent coefficient is positive and at or above the percentile over the "
                       "parent's positions; (S*m)V + (A - SV) there, A elsewhere", "percentile": percentile,
               "layer": str(ctx.cache.attrs.get("layer", "")), "grid": list(grid),
               "linear_head": ctx.linear is not None})
