"""The fviz stage on a recursive concepts file (a fabricated run: tiny CNN, real image files, a real recursive
NMF): every sub-concept gets an image, its excitation is measured against its siblings (their transform, their
coefficients on the rows they were fitted on), the file reloads, the setting is hashed only where there are
sub-concepts, ``--no-subconcepts`` leaves them out."""
from __future__ import annotations

import numpy as np
import pytest

from concepts.errors import ArtefactError, ConfigMismatchError
from concepts.schema import RunFolder, read_fviz, stage_path
from fviz_fakerun import adopt, fabricate, make_split

TINY = dict(steps=6, crops=2, image_size=48, crop_min=0.6, crop_max=0.8, lr=0.2, batch=8, device="cpu")


@pytest.fixture()
def recursive_run(tmp_path):
    from concepts.factorize import factorize_run

    split = make_split()
    fabricate(tmp_path, "a", split)
    factorize_run(tmp_path, n_concepts=3, recursive=True, sub_concepts=2, depth=2, threshold_percentile=50,
                  overwrite=True, progress=False)
    return tmp_path, split, adopt(tmp_path, "a", split)


def _pooled(split, images, eval_scale, components):
    """The evaluation crops' pooled activations of ``images``, measured as the stage measures them."""
    from concepts.fviz import Maco, Target, evaluate

    maco = Maco(steps=TINY["steps"], crops=TINY["crops"], image_size=TINY["image_size"])
    objective = maco.objective(split, [Target("concept", 0)] * len(images), components, split.preprocessing)
    return evaluate(objective, images, float(eval_scale), int(split.preprocessing.input_size), batch=64).pooled


def test_every_subconcept_gets_an_image_checked_against_its_siblings(recursive_run):
    from concepts.factorize.stage import subconcept_estimator
    from concepts.fviz import fviz_run, load_fviz

    run, split, models = recursive_run
    concepts = RunFolder(run).concepts("a")
    tree, r = concepts.tree, concepts.n_concepts
    assert tree.n_nodes >= 2 * r and set(tree.depth.tolist()) == {1, 2}  # a real tree of depth 2
    report = fviz_run(run, models=models, progress=False, **TINY)
    assert report.written == ["a"]
    record = load_fviz(run, "a")
    sub = record.subconcepts
    assert sub is not None and sorted(sub.node.tolist()) == list(range(r, r + tree.n_nodes))
    assert sub.images.shape == (tree.n_nodes, 48, 48, 3) and sub.transparency.shape == (tree.n_nodes, 48, 48)
    assert record.attrs["n_subconcepts"] == tree.n_nodes and record.attrs["subconcepts_layer"] == "features"
    assert record.attrs["config"]["subconcepts"] is True and np.isfinite(sub.objective).all()
    assert sub.curve.shape == (tree.n_nodes, TINY["steps"])
    # the concepts' images are unchanged in kind: r + logit, measured on the class bank
    assert record.concept_images().shape[0] == r and record.coefficients.shape[1] == r
    for row in range(len(sub)):
        i = int(sub.node[row]) - r
        siblings = np.flatnonzero(tree.parent == tree.parent[i])
        assert sub.parent[row] == tree.parent[i] and sub.coefficients.shape[1] == len(siblings) == 2
        j = int(sub.index[row])
        assert siblings[j] == i
        # the reference: the siblings' coefficients on the parent's strong rows
        reference = np.asarray(tree.coefficients[i])
        own = sub.coefficients[row, j]
        assert sub.percentile[row] == pytest.approx(100 * (reference < own).mean(), abs=1e-4)
        assert sub.p99[row] == pytest.approx(np.percentile(reference, 99), rel=1e-5)
        assert sub.excited[row] == bool(own > sub.p99[row] and np.argmax(sub.coefficients[row]) == j)
        # the image's coefficients are the siblings' transform of its pooled activation (not the class bank's)
        pooled = _pooled(split, sub.images[row:row + 1], record.attrs["eval_scale"], tree.components[siblings])
        expected = np.asarray(subconcept_estimator(concepts, siblings, device="cpu").transform(pooled))
        np.testing.assert_allclose(sub.coefficients[row], expected[0], rtol=1e-3, atol=1e-5)
        image, alpha = record.subconcept(int(sub.node[row]))
        assert np.array_equal(image, sub.images[row]) and np.array_equal(alpha, sub.transparency[row])
    assert sub.excites().tolist() == sub.excited.tolist() and record.attrs["subconcepts_excited"] == sub.excited.sum()
    # groups draw their own random phases: no two sub-concept images are the same
    flat = sub.images.reshape(len(sub), -1).astype(np.int64)
    assert len({row.tobytes() for row in flat}) == len(sub)
    light = read_fviz(stage_path(run, "fviz", "a"), images=False).subconcepts
    assert light.images.shape[0] == 0 and np.array_equal(light.node, sub.node)
    assert np.array_equal(light.coefficients, sub.coefficients, equal_nan=True)


def test_the_setting_is_hashed_only_for_recursive_files_and_can_be_turned_off(recursive_run, tmp_path_factory):
    from concepts.fviz import fviz_run, load_fviz
    from concepts.fviz.stage import wanted_config
    from concepts.settings import stage_config

    run, split, models = recursive_run
    fviz_run(run, models=models, progress=False, **TINY)
    with pytest.raises(ConfigMismatchError, match="subconcepts"):
        fviz_run(run, models=models, progress=False, subconcepts=False, **TINY)
    fviz_run(run, models=models, progress=False, subconcepts=False, overwrite=True, **TINY)
    off = load_fviz(run, "a")
    assert off.subconcepts is None and "n_subconcepts" not in off.attrs and "subconcepts" not in off.attrs["config"]
    with pytest.raises(ArtefactError, match="no visualisation of sub-concept"):
        off.subconcept(3)
    # a class without sub-concepts: the same config (and hash) as before the setting existed, whatever its value
    plain = tmp_path_factory.mktemp("plain")
    fabricate(plain, "a", split)
    attrs = RunFolder(plain).concepts("a", coefficients=False).attrs
    for value in (True, False):
        config = wanted_config(stage_config("fviz", None, subconcepts=value), None, attrs)
        assert "subconcepts" not in config
    fviz_run(plain, models=adopt(plain, "a", split), progress=False, **TINY)
    assert load_fviz(plain, "a").subconcepts is None



def test_the_progress_bar_counts_the_subconcepts_steps(recursive_run, monkeypatch):
    import concepts.fviz.stage as stage
    from concepts.fviz import fviz_run

    run, split, models = recursive_run
    bars = []

    class Bar:
        def __init__(self, total):
            self.total, self.n = total, 0
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(stage, "_progress_bar", lambda progress, total, class_id: Bar(total))
    fviz_run(run, models=models, progress=True, **{**TINY, "batch": 2})
    tree = RunFolder(run).concepts("a", coefficients=False).tree
    groups = len(set(tree.parent.tolist()))
    (bar,) = bars
    # 3 concepts + the logit in batches of 2, then one batch of 2 per group of 2 siblings
    assert bar.total == TINY["steps"] * (2 + groups) and bar.n == bar.total
