"""The concept tree of a class: its concepts and their sub-concepts, with their importance (a typed reader).

``RunFolder(run).concept_tree(class_id)`` (or :func:`concept_tree` of the two records) gives a
:class:`ConceptTree`: one :class:`ConceptNode` per concept (depth 0, parent -1, node id = concept index) and per
sub-concept (node ids r, r+1, ... in breadth-first order, as in the concepts file's ``tree/``). A class factorised
without ``--recursive`` is a tree of depth 0 (its concepts only).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .concepts import ConceptsRecord
from .importance import ImportanceRecord


@dataclass
class ConceptNode:
    """One concept (depth 0) or sub-concept of a class.

    ``rows``: the cached rows (indices into ``rows/*`` of the activations) the node was fitted on, i.e. its parent's
    strong rows, and ``coefficients`` its coefficient on each of them (None for a concept: it lives on every row,
    its coefficients are the concepts file's column). ``threshold``: the parent's coefficient at the tree's
    percentile (NaN for a concept). ``importance`` / ``share`` / ``share_of_parent``: per importance method, the raw
    class-level importance, the share of the class (the children's absolute shares sum to the node's) and the share among
    its siblings (for a concept: its share of the class); empty without an importance file.
    """

    node: int
    parent: int
    depth: int
    index: int
    layer: str
    components: np.ndarray
    rows: np.ndarray | None = None
    coefficients: np.ndarray | None = None
    threshold: float = float("nan")
    rel_error_before: float = float("nan")
    rel_error_after: float = float("nan")
    importance: dict[str, float] = field(default_factory=dict)
    share: dict[str, float] = field(default_factory=dict)
    share_of_parent: dict[str, float] = field(default_factory=dict)
    children: list[int] = field(default_factory=list)


@dataclass
class ConceptTree:
    """Every node of one class; ``nodes[i].node == i``."""

    class_id: str
    n_concepts: int
    nodes: list[ConceptNode]
    attrs: dict[str, Any] = field(default_factory=dict)  # the concepts file's ``tree/`` attributes

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, node: int) -> ConceptNode:
        return self.nodes[node]

    def roots(self) -> list[ConceptNode]:
        return self.nodes[: self.n_concepts]

    def children(self, node: int) -> list[ConceptNode]:
        return [self.nodes[i] for i in self.nodes[node].children]

    @property
    def n_subconcepts(self) -> int:
        return len(self.nodes) - self.n_concepts

    @property
    def bound(self) -> int:
        """The most sub-concepts the settings allow: r x (s + s^2 + ... + s^depth)."""
        return int(self.attrs.get("bound", 0))


def _importance_of(importance: ImportanceRecord | None, n_concepts: int, n_nodes: int):
    """method -> (importance, share, share_of_parent) arrays over every node."""
    out = {}
    if importance is None:
        return out
    sub = importance.subconcepts
    for name, method in importance.methods.items():
        raw = np.full(n_nodes, np.nan)
        share, of_parent = raw.copy(), raw.copy()
        raw[:n_concepts], share[:n_concepts] = method.class_importance, method.share
        of_parent[:n_concepts] = method.share
        if sub is not None and name in sub.methods and len(sub.node):
            raw[sub.node] = sub.methods[name]["class_importance"]
            share[sub.node] = sub.methods[name]["share"]
            of_parent[sub.node] = sub.methods[name]["share_of_parent"]
        out[name] = (raw, share, of_parent)
    return out


def concept_tree(concepts: ConceptsRecord, importance: ImportanceRecord | None = None) -> ConceptTree:
    """The tree of one class from its concepts record (and importance record, when there is one)."""
    r = concepts.n_concepts
    layer = str(concepts.attrs.get("layer", ""))
    nodes = [ConceptNode(k, -1, 0, k, layer, concepts.components[k]) for k in range(r)]
    tree = concepts.tree
    if tree is not None:
        sub_layer = str(tree.attrs.get("layer") or layer)
        for i in range(tree.n_nodes):
            nodes.append(ConceptNode(
                r + i, int(tree.parent[i]), int(tree.depth[i]), int(tree.index[i]), sub_layer, tree.components[i],
                rows=tree.rows[i], coefficients=tree.coefficients[i], threshold=float(tree.threshold[i]),
                rel_error_before=float(tree.rel_error_before[i]), rel_error_after=float(tree.rel_error_after[i])))
            nodes[int(tree.parent[i])].children.append(r + i)
    for name, (raw, share, of_parent) in _importance_of(importance, r, len(nodes)).items():
        for node in nodes:
            node.importance[name] = float(raw[node.node])
            node.share[name] = float(share[node.node])
            node.share_of_parent[name] = float(of_parent[node.node])
    return ConceptTree(str(concepts.attrs.get("class_id", "")), r, nodes,
                       dict(tree.attrs) if tree is not None else {"depth": 0, "n_nodes": 0, "bound": 0})
