"""The sub-concepts of a class's concepts (``factorize --recursive``) as views: each concept card expands to its
sub-concepts, each with its share of the parent's importance, its top crops and, when ``concepts fviz`` made it,
its feature visualisation.

A sub-concept's crops are its strongest rows (the rows of its node, ``tree.rows``, ranked by ``tree.coefficients``,
one per photo), cut by the same machinery as the concepts' crops (:mod:`concepts.evidence.crops`,
:class:`~concepts.atlas.pictures.PhotoStore`). Shares are the importance file's ``share_of_parent``: signed shares
of the siblings' summed absolute importance (they add up to 100% in absolute value).
"""
from __future__ import annotations

import numpy as np

from ..evidence.crops import MIN_CROP, TopCrop, display_box, input_box_to_original, top_rows
from ..schema.classdata import ClassData
from .views import SubconceptView


def node_crops(data: ClassData, rows: np.ndarray, coefficients: np.ndarray, k: int,
               min_size: int = MIN_CROP) -> list[TopCrop]:
    """The ``k`` strongest rows of a node (one per photo, positive coefficients, never a skipped image)."""
    rows = np.asarray(rows, np.int64)
    values = np.asarray(coefficients, np.float64).reshape(-1)
    if k <= 0 or not len(rows) or len(values) != len(rows) or rows.max(initial=-1) >= len(data.row_image):
        return []
    valid = ~data.skipped[data.row_image[rows]]
    column = np.where(valid, values, -np.inf)[:, None]
    prep = data.act_attrs.get("preprocessing")
    out: list[TopCrop] = []
    for j in top_rows(column, 0, k, data.row_image[rows]):
        value = float(column[j, 0])
        if not np.isfinite(value) or value <= 0:
            continue
        row = int(rows[j])
        image = int(data.row_image[row])
        box = display_box(data.row_box[row], data.input_size, min_size)
        w = int(data.image_width[image]) if data.image_width is not None else 0
        h = int(data.image_height[image]) if data.image_height is not None else 0
        original = input_box_to_original(box, w, h, prep) if w > 0 and h > 0 else None
        out.append(TopCrop(-1, len(out) + 1, row, image, box, original, value))
    return out


def _shares(data: ClassData, node: int) -> dict[str, float]:
    """method -> the node's signed share of its parent's importance (empty without sub-concept importance)."""
    sub = data.subconcepts
    if sub is None or not len(sub.node):
        return {}
    where = np.flatnonzero(np.asarray(sub.node) == node)
    if not len(where):
        return {}
    return {name: float(np.asarray(values["share_of_parent"])[where[0]]) for name, values in sub.methods.items()
            if "share_of_parent" in values}


def subconcept_tree(data: ClassData, k: int, make_crops, visualisations: dict | None = None
                    ) -> dict[int, list[SubconceptView]]:
    """concept -> its sub-concepts (each with its own, recursively), siblings in their stored order.

    ``make_crops(crops)`` turns a node's :class:`~concepts.evidence.crops.TopCrop` list into crop views (and writes
    their pictures); ``k`` crops per sub-concept; ``visualisations``: node id -> its
    :class:`~concepts.atlas.views.Visualisation` (the run's fviz images)."""
    tree = data.tree
    r = data.n_concepts
    out: dict[int, list[SubconceptView]] = {c: [] for c in range(r)}
    if tree is None or not tree.n_nodes:
        return out
    views: dict[int, SubconceptView] = {}
    for i in range(tree.n_nodes):  # breadth first: a parent comes before its children
        node, parent = r + i, int(tree.parent[i])
        view = SubconceptView(node=node, index=int(tree.index[i]), depth=int(tree.depth[i]),
                              n_rows=int(len(tree.rows[i])), shares=_shares(data, node))
        view.crops = make_crops(node_crops(data, tree.rows[i], tree.coefficients[i], k))
        view.visualisation = (visualisations or {}).get(node)
        views[node] = view
        if parent < r:
            out[parent].append(view)
        elif parent in views:
            views[parent].children.append(view)
    return out


def tree_note(data: ClassData) -> str:
    """The tree's settings in words ('' without sub-concepts)."""
    tree = data.tree
    if tree is None or not tree.n_nodes:
        return ""
    a = tree.attrs
    layer = a.get("layer") or data.act_attrs.get("layer", "?")
    return (f"{tree.n_nodes} sub-concepts: each concept's rows at or above its {float(a.get('percentile', 90)):g}th "
            f"percentile were factorised again into {a.get('sub_concepts', '?')} ({a.get('method', '?')}, layer "
            f"{layer}, depth {a.get('depth', '?')})")
