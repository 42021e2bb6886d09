"""The proof of recursive sub-concepts on planted sub-types (``concepts synth --variant subtypes``).

The key concept of class ``zebra`` comes as stripes at 0 or at 90 degrees, the same class cue. Per-class NMF with
two concepts (the stripes and the rest) merges both sub-types into one concept; the recursive step splits that
concept's strong rows into sub-concepts that each hold one sub-type (purity >= 0.8 of the contingency of the
sub-concept argmax against the planted sub-type), and both sub-concepts matter for the class logit.

Small settings that still make the point: 150 training scenes per class for 3 epochs at batch 32 (~20-40 s here);
the defaults (300 x 6) separate the sub-types even better, but also already at the top level for r >= 3.
"""
from __future__ import annotations

import numpy as np
import pytest

from concepts.evaluate import synthetic as syn


def subtype_of_rows(cache) -> np.ndarray:
    """The planted sub-type of every cached row (a feature-map position): the sub-type covering at least a quarter
    of the position's cell, else 0."""
    cell = syn.IMAGE_SIZE // cache.grid[0]
    out = np.zeros(cache.n_rows, np.int64)
    maps = {}
    for i, (image, (pi, pj)) in enumerate(zip(cache.row_image, cache.row_position)):
        if image not in maps:
            maps[image] = syn.load_mask(cache.images["path"][image], "subtypes")
        patch = maps[image][pi * cell:(pi + 1) * cell, pj * cell:(pj + 1) * cell]
        share = [(patch == k).mean() for k in (1, 2)]
        out[i] = 1 + int(np.argmax(share)) if max(share) >= 0.25 else 0
    return out


def purity(groups: np.ndarray, truth: np.ndarray) -> float:
    """Share of the rows whose group's majority label is their label (the contingency table's row maxima)."""
    table = np.array([[np.sum((groups == g) & (truth == t)) for t in np.unique(truth)] for g in np.unique(groups)])
    return float(table.max(axis=1).sum() / table.sum())


@pytest.mark.slow
def test_recursive_step_separates_the_planted_subtypes_that_nmf_merges(tmp_path):
    from concepts.evaluate.synthetic_model import make_synthetic
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run
    from concepts.schema import RunFolder

    data, run, zebra = tmp_path / "data", tmp_path / "run", syn.class_names()[0]
    meta = make_synthetic(data, n_per_class=30, n_train_per_class=150, epochs=3, batch_size=32, seed=0,
                          device="cpu", progress=False, variant="subtypes")
    assert meta["model"]["name"] == "synth_cnn_subtypes" and meta["model"]["test_accuracy"] >= 0.95
    extract_run(data / "images", run, model="synth_cnn_subtypes", checkpoint=str(data / "synth_cnn.pt"),
                labels=str(data / "labels.csv"), mode="patches", classes=[zebra], workers=0, progress=False)
    factorize_run(run, n_concepts=2, seed=0, recursive=True, sub_concepts=2, threshold_percentile=90,
                  progress=False)
    folder = RunFolder(run)
    with folder.activations(zebra) as cache:
        truth = subtype_of_rows(cache)
    record = folder.concepts(zebra)
    U, tree = record.coefficients, record.tree
    striped = truth > 0
    parent = int(np.argmax(U[striped].mean(axis=0)))
    for t in (1, 2):  # the class's NMF merges the sub-types: one concept is the strongest on both
        assert int(np.argmax(U[truth == t].mean(axis=0))) == parent, f"sub-type {t}"
    kids = np.flatnonzero(tree.parent == parent)
    rows = tree.rows[kids[0]]
    labels = truth[rows]
    assert np.mean(labels > 0) >= 0.7 and min(np.mean(labels[labels > 0] == t) for t in (1, 2)) >= 0.25
    split = np.stack([tree.coefficients[k] for k in kids], axis=1).argmax(axis=1)
    score = purity(split[labels > 0], labels[labels > 0])
    assert score >= 0.8, f"purity {score:.3f}"
    assert purity(np.zeros(int(striped[rows].sum())), labels[labels > 0]) < 0.8  # the parent alone is mixed
    importance_run(run, methods=["gradient"], progress=False)
    share = folder.importance(zebra, maps=False).subconcepts.methods["gradient"]["share_of_parent"]
    assert (share[kids] >= 0.2).all(), share[kids]  # both sub-types are the class cue
