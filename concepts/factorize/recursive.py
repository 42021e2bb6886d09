"""Recursive sub-concepts (CRAFT's third ingredient), the computation: :func:`grow_tree`.

For every concept of a class, the rows where it is strong (a positive coefficient at or above the
``percentile`` of its coefficients over the rows it lives on) are factorised again into ``sub_concepts``
sub-concepts with the class's method; the sub-concepts are split the same way, down to ``depth`` levels. The rows
can be those of the concepts' own layer or of another cached layer with the very same rows (an earlier layer of
the same crops): the sub-concepts then live in that layer's space. A node with fewer than ``2 x sub_concepts``
strong rows, or whose rows the method cannot factorise, is not split (counted in ``not_split``).

Node ids: concept ``k`` is node ``k``; sub-concepts are numbered ``r, r+1, ...`` breadth first. The result is the
schema's :class:`~concepts.schema.concepts.TreeArrays` (``tree/`` of the concepts file). Deterministic: every fit
uses the same seed and the rows come in row order.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import DataError
from ..schema.concepts import TreeArrays


@dataclass
class TreeSettings:
    depth: int = 1
    sub_concepts: int = 4
    percentile: float = 90.0
    seed: int = 0
    max_rows: int = 200_000


@dataclass
class _Open:
    """A node whose strong rows may be split: its id, its rows, its coefficient on them, its bank."""

    node: int
    rows: np.ndarray
    coef: np.ndarray
    bank: Any  # the fitted estimator the node belongs to (reconstruction "before")
    bank_coefs: np.ndarray | None  # that bank's coefficients on ``rows`` (None: another layer's space)


@dataclass
class _Nodes:
    columns: dict[str, list] = field(default_factory=lambda: {k: [] for k in (
        "parent", "depth", "index", "components", "threshold", "rel_error_before", "rel_error_after", "rows",
        "coefficients")})
    state: dict[str, list] = field(default_factory=dict)

    def add(self, **values) -> None:
        for key, value in values.items():
            self.columns[key].append(value)


def strong_rows(coef: np.ndarray, percentile: float) -> tuple[np.ndarray, float]:
    """Positions (into ``coef``) of the positive coefficients at or above the percentile, and the threshold."""
    threshold = float(np.percentile(coef, percentile)) if len(coef) else 0.0
    return np.flatnonzero((coef >= threshold) & (coef > 0)), threshold


def relative_error(X: np.ndarray, reconstruction: np.ndarray) -> float:
    norm = float(np.linalg.norm(X))
    return float(np.linalg.norm(X - reconstruction) / norm) if norm > 0 else float("nan")


def _fit(make: Callable[[], Any], X: np.ndarray, settings: TreeSettings):
    """A fresh sub-bank fitted on ``X`` (a uniform sample of ``max_rows`` rows when there are more), and the
    coefficients of every row; None when the method cannot factorise these rows."""
    estimator = make()
    try:
        if len(X) > settings.max_rows:
            pick = np.sort(np.random.default_rng(settings.seed).choice(len(X), settings.max_rows, replace=False))
            estimator.fit(X[pick])
            S = estimator.transform(X)
        else:
            S = estimator.fit_transform(X)
    except DataError:
        return None
    S = np.asarray(S, np.float32)
    if not (np.isfinite(S).all() and np.isfinite(estimator.components_).all()):
        return None
    return estimator, S


def _split(node: _Open, rows_of: Callable[[np.ndarray], np.ndarray], make, settings: TreeSettings,
           depth: int, nodes: _Nodes, first_id: int) -> list[_Open]:
    """Split one node: fit its strong rows, add its children to ``nodes``; returns them (empty: not split)."""
    picked, threshold = strong_rows(node.coef, settings.percentile)
    if len(picked) < 2 * settings.sub_concepts:
        return []
    rows = node.rows[picked]
    X = rows_of(rows)
    fitted = _fit(make, X, settings)
    if fitted is None:
        return []
    estimator, S = fitted
    before = float("nan")
    if node.bank_coefs is not None:
        before = relative_error(X, np.asarray(node.bank.inverse_transform(node.bank_coefs[picked]), np.float32))
    after = relative_error(X, np.asarray(estimator.inverse_transform(S), np.float32))
    children = []
    for j in range(S.shape[1]):
        nodes.add(parent=node.node, depth=depth, index=j, components=np.asarray(estimator.components_[j]),
                  threshold=threshold, rel_error_before=before, rel_error_after=after, rows=rows,
                  coefficients=S[:, j])
        for name, value in estimator.state_arrays().items():
            nodes.state.setdefault(name, []).append(np.asarray(value))
        children.append(_Open(first_id + len(nodes.columns["parent"]) - 1, rows, S[:, j], estimator, S))
    return children


def grow_tree(U: np.ndarray, bank, rows_of: Callable[[np.ndarray], np.ndarray], make: Callable[[], Any],
              settings: TreeSettings, *, same_layer: bool = True, layer: str = "", method: str = "") -> TreeArrays:
    """The sub-concept tree of a class.

    ``U`` (R, r): the class's coefficients of every cached row; ``bank``: the class's fitted estimator; ``rows_of
    (indices) -> (m, D')``: the cached rows of the sub-concepts' layer (the same rows, another layer when
    ``same_layer`` is False); ``make()``: a fresh estimator with ``sub_concepts`` concepts.
    """
    start = time.perf_counter()
    r = U.shape[1]
    every = np.arange(U.shape[0])
    level = [_Open(k, every, U[:, k], bank, U if same_layer else None) for k in range(r)]
    nodes, not_split = _Nodes(), 0
    for depth in range(1, settings.depth + 1):
        following = []
        for node in level:
            children = _split(node, rows_of, make, settings, depth, nodes, r)
            not_split += not children
            following += children
        level = following
    s = settings.sub_concepts
    return _arrays(nodes, {
        "percentile": float(settings.percentile), "depth": int(settings.depth), "sub_concepts": int(s),
        "layer": layer, "method": method, "n_nodes": len(nodes.columns["parent"]), "not_split": int(not_split),
        "bound": int(r * sum(s ** d for d in range(1, settings.depth + 1))), "seed": int(settings.seed),
        "seconds": time.perf_counter() - start})


def _arrays(nodes: _Nodes, attrs: dict[str, Any]) -> TreeArrays:
    c = nodes.columns
    width = len(c["components"][0]) if c["components"] else 0
    return TreeArrays(
        parent=np.asarray(c["parent"], np.int32), depth=np.asarray(c["depth"], np.int32),
        index=np.asarray(c["index"], np.int32),
        components=np.asarray(c["components"], np.float32).reshape(len(c["parent"]), width),
        threshold=np.asarray(c["threshold"], np.float32),
        rel_error_before=np.asarray(c["rel_error_before"], np.float32),
        rel_error_after=np.asarray(c["rel_error_after"], np.float32),
        rows=[np.asarray(x, np.int64) for x in c["rows"]], coefficients=[np.asarray(x, np.float32)
                                                                         for x in c["coefficients"]],
        state={name: np.stack(values) for name, values in nodes.state.items()}, attrs=attrs)
