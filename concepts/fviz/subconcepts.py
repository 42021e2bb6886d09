"""The visualisations of a class's sub-concepts (``factorize --recursive``): arrays in, arrays out.

Every group of siblings (the sub-concepts fitted together on their parent's strong rows) is one bank for
:func:`~concepts.fviz.compute.visualize_bank`: its vectors are the MACO directions, the siblings' estimator is the
transform of the excitation check (an image passes when its own sub-concept's coefficient is the largest of the
siblings' and above the 99th percentile of that sub-concept over the rows the siblings were fitted on), and the
siblings' coefficients on those rows (``tree/coefficients``) are the reference. ``split`` is the model cut at the
sub-concepts' layer (the concepts' own, or ``--sub-layer``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..schema.fviz import FvizSubconcepts


def sibling_groups(tree, r: int) -> list[tuple[int, np.ndarray]]:
    """``(parent node, positions into the tree's arrays)`` of every group of siblings, in tree order."""
    from ..importance.subconcepts import groups_of

    return [(int(parent), np.asarray(nodes) - r) for parent, nodes, _ in groups_of(tree.parent, tree.depth, r)]


def sibling_reference(tree, positions: np.ndarray) -> np.ndarray:
    """(M, s) the siblings' coefficients on the rows they were fitted on (their parent's strong rows: the same
    rows for every sibling)."""
    return np.stack([np.asarray(tree.coefficients[int(p)], np.float32) for p in positions], axis=1)


def n_subconcept_batches(tree, r: int, batch: int) -> int:
    """How many MACO batches the sub-concepts take (one run per group of siblings): the progress bar's share."""
    if tree is None or not tree.n_nodes:
        return 0
    return sum(-(-len(positions) // max(1, int(batch))) for _, positions in sibling_groups(tree, r))


def visualize_subconcepts(record, split, estimator_of: Callable[[np.ndarray], Callable], preprocessing, spectrum,
                          maco, *, class_index: int | None, key: str = "", progress=None) -> FvizSubconcepts:
    """One MACO image per sub-concept of ``record`` (a :class:`~concepts.schema.ConceptsRecord` with a tree).

    ``estimator_of(positions)``: the transform (pooled activations (n, D') -> (n, s)) of the siblings at those
    positions of the tree; ``class_index``: the logit measured on every image (None: not measured); ``key``: mixed
    into the images' seeds (with the parent's node id, so that groups do not share their draws).
    """
    from .compute import visualize_bank

    tree, r = record.tree, record.n_concepts
    parts: dict[str, list] = {name: [] for name in ("node", "parent", "index", "images", "transparency",
                                                    "objective", "curve", "coefficients", "percentile", "p99",
                                                    "excited", "logit")}
    groups = sibling_groups(tree, r)
    width = max((len(positions) for _, positions in groups), default=0)
    for parent, positions in groups:
        made = visualize_bank(split, tree.components[positions], estimator_of(positions),
                              sibling_reference(tree, positions), preprocessing, spectrum, maco,
                              class_index=class_index, logit_target=False, key=f"{key}/node{parent}",
                              progress=progress)
        s = len(positions)
        parts["node"].append(r + positions)
        parts["parent"].append(np.full(s, parent))
        parts["index"].append(np.arange(s))
        padded = np.full((s, width), np.nan, np.float32)
        padded[:, :s] = made.coefficients
        parts["coefficients"].append(padded)
        parts["p99"].append(made.p99)
        parts["excited"].append(made.excited)
        for name in ("images", "transparency", "objective", "curve", "percentile", "logit"):
            parts[name].append(getattr(made, name))
    if not groups:
        size, steps = int(maco.image_size), int(maco.steps)
        empty = {"images": np.zeros((0, size, size, 3), np.uint8), "transparency": np.zeros((0, size, size)),
                 "curve": np.zeros((0, steps)), "coefficients": np.zeros((0, 0))}
        return FvizSubconcepts(**{name: empty.get(name, np.zeros(0)) for name in parts})
    return FvizSubconcepts(**{name: np.concatenate(values) for name, values in parts.items()})
