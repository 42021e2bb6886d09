"""The proof of recursive sub-concepts on planted sub-types (``concepts synth --variant subtypes``).

The key concept of class ``zebra`` comes as stripes at 0 or at 90 degrees, the same class cue. Per-class NMF with
two concepts (the stripes and the rest) merges both sub-types into one concept; the recursive step splits that
concept's strong rows into sub-concepts that each hold one sub-type (purity >= 0.8 of the contingency of the
sub-concept argmax against the planted sub-type), and both sub-concepts matter for the class logit.

Small settings that still make the point: 150 training scenes per class for 3 epochs at batch 32 (~20-40 s here).
With the defaults (300 x 6) the network tells the sub-types apart more clearly still, and NMF then already
separates them at the top level from r = 3 concepts on.
"""
from __future__ import annotations

import numpy as np
import pytest

from concepts.evaluate import synthetic as syn
from concepts.evaluate.subtypes import purity, split_report, subtype_of_rows


def test_purity_and_row_labels_on_known_groupings():
    truth = np.array([1, 1, 1, 2, 2, 2])
    assert purity(np.array([0, 0, 0, 1, 1, 1]), truth) == 1.0
    assert purity(np.zeros(6), truth) == 0.5
    assert purity(np.array([0, 0, 1, 1, 1, 1]), truth) == pytest.approx(5 / 6)


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
    assert set(np.unique(truth)) == {0, 1, 2}
    report = split_report(folder.concepts(zebra), truth)
    assert report["merged"]  # the class's NMF: one concept is the strongest on both sub-types ...
    assert report["planted_rows"] >= 0.7 * report["rows"] and min(report["mix"].values()) >= 0.25
    assert report["parent_purity"] < 0.8  # ... its strong rows hold both
    assert report["purity"] >= 0.8, report  # its sub-concepts one each
    importance_run(run, methods=["gradient"], progress=False)
    sub = folder.importance(zebra, maps=False).subconcepts
    share = sub.methods["gradient"]["share_of_parent"][report["children"] - sub.node[0]]
    assert (share >= 0.2).all(), share  # both sub-types are the class cue
    # feature visualisation with few steps: every sub-concept gets an image, checked against its siblings
    from concepts.fviz import fviz_run

    fviz_run(run, steps=4, crops=2, image_size=64, batch=8, device="cpu", progress=False)
    tree = folder.concepts(zebra, coefficients=False).tree
    images = folder.fviz(zebra).subconcepts
    assert sorted(images.node.tolist()) == list(range(2, 2 + tree.n_nodes))
    assert images.images.shape[0] == tree.n_nodes and images.coefficients.shape[1] == 2  # the two siblings
    assert images.excites().tolist() == images.excited.tolist()
