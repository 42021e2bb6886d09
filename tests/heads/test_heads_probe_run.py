"""The proof of a head-free backbone explained through a probe: a random-weight DINOv2 ViT-S/14 (timm,
``pretrained=False``, no classifier) on two Imagenette classes runs extract -> probe -> factorize -> importance ->
atlas -> export; the importances explain the probe's logits, whose file and held-out accuracy are in the provenance,
and a refitted probe makes them stale."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from concepts.schema import file_sha256, open_run
from concepts.schema.probe import probe_path, read_probe
from heads_helpers import RUN_CLASSES, adopted, tiny_split


@pytest.fixture(scope="module")
def dino_run(tmp_path_factory, val50):
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run
    from concepts.probe import probe_run

    # the architecture at 112 px (8 x 8 patches of 14 px; 518 is its default), so that the test takes seconds
    split, info = tiny_split("vit_small_patch14_dinov2", img_size=112)
    run = tmp_path_factory.mktemp("dino")
    extract_run(val50, run, classes=RUN_CLASSES, max_images=3, mode="patches", workers=0, split=split, info=info,
                progress=False)
    models = adopted(split, run, RUN_CLASSES[0])
    report = probe_run(run, models=models, progress=False)
    factorize_run(run, method="semi_nmf", n_concepts=3, progress=False)
    return run, models, report, split


def test_the_probe_is_trained_on_the_run_classes_and_reports_held_out_accuracy(dino_run):
    run, _, report, _ = dino_run
    probe = read_probe(probe_path(run))
    assert probe.classes == RUN_CLASSES and probe.weight.shape == (2, 384)
    assert report.n_test == 2 and report.n_train == 4  # one of each class's three images held out
    assert 0.0 <= report.accuracy <= 1.0 and probe.meta["accuracy"] == report.accuracy
    assert probe.meta["per_class"][RUN_CLASSES[0]]["n_test"] == 1
    with open_run(run).activations(RUN_CLASSES[0]) as cache:  # extracted without a head: no logits
        assert cache.attrs["head"] == "none" and np.isnan(cache.images["logit"]).all()


def test_importance_atlas_and_export_explain_the_probe(dino_run):
    from concepts.atlas import build_atlas
    from concepts.export import export_run
    from concepts.importance import importance_run
    from concepts.probe.fitting import pooled_features

    run, models, report, split = dino_run
    importance_run(run, models=models, methods=["gradient"], steps=1, n_subsets=2, progress=False)
    folder = open_run(run)
    probe = read_probe(probe_path(run))
    for index, class_id in enumerate(RUN_CLASSES):
        record = folder.importance(class_id, maps=False)
        attrs = record.attrs
        assert attrs["head"] == "probe" and attrs["head_source"] == "run probe"
        assert attrs["head_sha256"] == file_sha256(probe_path(run)) and attrs["class_index"] == index
        assert attrs["head_accuracy"] == pytest.approx(report.accuracy) and attrs["linear_head"] is False
        assert attrs["inputs"]["head"]["creation_id"] == probe.identity
        # the logit explained is the probe's on the pooled features the head sees
        with folder.activations(class_id) as cache:
            features = pooled_features(split, cache)
        expected = (features @ probe.weight.T + probe.bias)[:, index].mean()
        # the logit is a sum of large terms that cancel (random weights): float32 rounding scales with the terms
        scale = float((np.abs(features) @ np.abs(probe.weight[index])).mean())
        assert record.fidelity_attrs["reconstruction_logit_original"] == pytest.approx(expected, abs=2e-3 * scale)
        assert np.isfinite(record.methods["gradient"].per_image[record.kept]).all()
    assert (build_atlas(run, progress=False)).is_file()
    table = pd.read_csv(export_run(run, formats=["csv"], progress=False) / "importances.csv",
                        keep_default_na=False)
    assert set(table["class_index"]) == {0, 1} and set(table["method"]) == {"gradient"}
    assert set(table["label_source"]) == {"none"} and (table["concept_label"] == "").all()
    classes = pd.read_csv(run / "exports" / "classes.csv")
    assert set(classes["head"]) == {"probe"}


def test_a_refitted_probe_makes_the_importances_stale(dino_run):
    from concepts.importance import importance_run
    from concepts.probe import probe_run

    run, models, _, _ = dino_run
    if not (run / "importance").is_dir():
        pytest.skip("needs the importance test before it")
    again = probe_run(run, models=models, progress=False)
    assert again.status == "done"  # same settings, same activations: not refitted
    refit = probe_run(run, models=models, seed=1, overwrite=True, progress=False)
    assert refit.status == "written"
    report = importance_run(run, models=models, methods=["gradient"], steps=1, n_subsets=2,
                            classes=RUN_CLASSES[:1], progress=False)
    assert report.stale == RUN_CLASSES[:1]
