"""``--head none``: extraction without class scores, factorize as usual, importance replaced by prevalence (the
share of images whose strongest concept it is) and the data say so; then ``concepts probe RUN`` gives the run a
head, and the next ``concepts importance RUN`` explains the probe (closed forms: a probe on a pooled CNN is linear)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from concepts.cli import main
from concepts.schema import open_run
from heads_helpers import RUN_CLASSES


@pytest.fixture(scope="module")
def none_run(tmp_path_factory, val50):
    run = tmp_path_factory.mktemp("none")
    assert main(["extract", str(val50), "--out", str(run), "--model", "test_resnet", "--random-init", "--head", "none",
                 "--classes", ",".join(RUN_CLASSES), "--max-images", "4", "--mode", "patches", "--workers", "0",
                 "--threads", "1", "-q"]) == 0
    assert main(["factorize", str(run), "--method", "nmf", "--concepts", "3", "--threads", "1", "-q"]) == 0
    assert main(["importance", str(run), "--threads", "1", "-q"]) == 0
    return run


def test_without_a_head_importance_is_prevalence_and_says_so(none_run):
    folder = open_run(none_run)
    for class_id in RUN_CLASSES:
        with folder.activations(class_id) as cache:
            assert cache.attrs["head"] == "none" and cache.attrs["class_index"] == -1
            assert np.isnan(cache.images["logit"]).all() and (cache.images["predicted"] == -1).all()
            n_kept, n_pos = len(cache.kept), cache.n_positions
        record = folder.importance(class_id, maps=False)
        assert record.attrs["importance_kind"] == "prevalence" and record.attrs["head"] == "none"
        assert list(record.methods) == ["prevalence"] and record.fidelity == {}
        prevalence = record.methods["prevalence"]
        per_image = prevalence.per_image[record.kept]
        assert (per_image.sum(axis=1) == 1).all() and set(np.unique(per_image)) <= {0.0, 1.0}
        # the share of images whose strongest concept (largest mean coefficient) it is
        U = folder.concepts(class_id).coefficients.reshape(n_kept, n_pos, -1)
        strongest = np.bincount(U.mean(axis=1).argmax(axis=1), minlength=U.shape[2]) / n_kept
        np.testing.assert_allclose(prevalence.class_importance, strongest, atol=1e-6)
        np.testing.assert_allclose(prevalence.share, strongest, atol=1e-6)


def test_the_atlas_builds_and_the_exports_carry_prevalence(none_run):
    assert main(["atlas", str(none_run), "-q"]) == 0 and (none_run / "atlas" / "index.html").is_file()
    assert main(["export", str(none_run), "--format", "csv"]) == 0
    table = pd.read_csv(none_run / "exports" / "importances.csv", keep_default_na=False)
    assert set(table["method"]) == {"prevalence"} and set(table["label_source"]) == {"none"}
    assert set(pd.read_csv(none_run / "exports" / "classes.csv")["head"]) == {"none"}


def test_a_probe_gives_the_run_a_head_and_importance_follows(none_run, capsys):
    assert main(["probe", str(none_run), "--threads", "1", "-q"]) == 0
    assert "held-out accuracy" in capsys.readouterr().err
    assert main(["importance", str(none_run), "--threads", "1", "-q"]) == 0
    assert "2 were stale" in capsys.readouterr().err  # the probe is an input of the importance files
    folder = open_run(none_run)
    for index, class_id in enumerate(RUN_CLASSES):
        attrs = folder.importance(class_id, maps=False).attrs
        assert attrs["head"] == "probe" and attrs["head_source"] == "run probe" and attrs["class_index"] == index
        assert attrs["importance_kind"] == "importance" and attrs["linear_head"] is True


def test_a_probe_file_as_the_head_of_an_extraction(none_run, tmp_path, val50):
    """``--head probe:FILE``: the activations record the probe's logits and provenance; importance explains it."""
    import torch

    from concepts.schema.probe import probe_path, read_probe

    if not probe_path(none_run).is_file():
        pytest.skip("needs the probe test before it")
    probe = read_probe(probe_path(none_run))
    run = tmp_path / "with-probe"
    assert main(["extract", str(val50), "--out", str(run), "--model", "test_resnet", "--random-init",
                 "--head", f"probe:{probe_path(none_run)}", "--classes", RUN_CLASSES[1], "--max-images", "2",
                 "--mode", "patches", "--workers", "0", "--threads", "1", "-q"]) == 0
    assert main(["factorize", str(run), "--concepts", "2", "--threads", "1", "-q"]) == 0
    assert main(["importance", str(run), "--method", "gradient", "--threads", "1", "-q"]) == 0
    folder = open_run(run)
    with folder.activations(RUN_CLASSES[1]) as cache:
        attrs = dict(cache.attrs)
        maps = torch.from_numpy(cache.maps())
        logits = cache.images["logit"]
    assert attrs["head"] == "probe" and attrs["class_index"] == 1 and attrs["class_index_source"] == "head"
    assert attrs["head_sha256"] == probe.sha256 and attrs["head_accuracy"] == probe.meta["accuracy"]
    pooled = maps.mean(dim=1).numpy()  # test_resnet: global average pooling, then the probe
    np.testing.assert_allclose(logits, (pooled @ probe.weight.T + probe.bias)[:, 1], rtol=2e-3, atol=2e-3)
    record = folder.importance(RUN_CLASSES[1], maps=False)
    assert record.attrs["head_source"] == "activations" and record.attrs["linear_head"] is True
