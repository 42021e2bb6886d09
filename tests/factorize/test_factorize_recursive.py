"""Recursive sub-concepts (``factorize --recursive``): the tree on planted data, its file, its settings and their
hash, the reuse of an existing bank, sub-concepts at another cached layer."""
from __future__ import annotations

import numpy as np
import pytest

from concepts.errors import ConceptsError, ConfigMismatchError
from concepts.factorize import factorize_run
from concepts.factorize.recursive import TreeSettings, grow_tree, strong_rows
from concepts.schema import RunFolder, read_concepts
from concepts.settings import load_config
from fake_artefacts import write_activations


def planted_subtypes(n_images=16, N=16, seed=0):
    """Rows of two kinds: background, and one "stripes" concept that comes as two sub-types sharing most of their
    profile (a common part plus a small specific one). Returns maps (n, N, D) and the sub-type of every row (0 for
    background rows)."""
    rng = np.random.default_rng(seed)
    D = 24
    background = np.r_[np.ones(6), np.zeros(18)] + 0.05
    common = np.r_[np.zeros(6), np.ones(12), np.zeros(6)]
    specific = [np.r_[np.zeros(18), np.ones(3), np.zeros(3)], np.r_[np.zeros(21), np.ones(3)]]
    kind = rng.integers(0, 3, size=n_images * N)  # 0 background, 1 or 2 the sub-type
    A = np.empty((len(kind), D))
    for i, k in enumerate(kind):
        strength = rng.uniform(0.5, 1.5)
        A[i] = background * rng.uniform(0.2, 1.0) if k == 0 else strength * (common + 0.6 * specific[k - 1])
    A += 0.01 * rng.random(A.shape)
    return A.reshape(n_images, N, D).astype(np.float32), kind


def _purity(labels: np.ndarray, truth: np.ndarray) -> float:
    table = np.array([[np.sum((labels == a) & (truth == b)) for b in np.unique(truth)] for a in np.unique(labels)])
    return float(table.max(axis=1).sum() / table.sum())


def test_grow_tree_splits_the_strong_rows_of_every_concept_and_records_them():
    from concepts.factorize import make_estimator

    maps, kind = planted_subtypes()
    A = maps.reshape(-1, maps.shape[-1])
    bank = make_estimator("nmf", 2, random_state=0)
    U = np.asarray(bank.fit_transform(A))
    parent = int(np.argmax([U[kind > 0, k].mean() for k in range(2)]))
    assert np.mean(U[kind == 1].argmax(1) == parent) > 0.9 and np.mean(U[kind == 2].argmax(1) == parent) > 0.9
    settings = TreeSettings(depth=1, sub_concepts=2, percentile=50, seed=0)
    tree = grow_tree(U, bank, lambda idx: A[idx], lambda: make_estimator("nmf", 2, random_state=0), settings)
    assert tree.n_nodes == 4 and tree.attrs["bound"] == 4 and tree.attrs["not_split"] == 0
    assert tree.parent.tolist() == [0, 0, 1, 1] and tree.depth.tolist() == [1] * 4
    assert tree.index.tolist() == [0, 1, 0, 1]
    for i in range(4):
        k = tree.parent[i]
        picked, threshold = strong_rows(U[:, k], 50)
        assert tree.threshold[i] == pytest.approx(threshold)
        assert np.array_equal(tree.rows[i], picked) and len(tree.coefficients[i]) == len(picked)
        assert (U[tree.rows[i], k] >= threshold).all() and threshold == pytest.approx(np.percentile(U[:, k], 50))
    kids = np.flatnonzero(tree.parent == parent)
    rows = tree.rows[kids[0]]
    split = np.stack([tree.coefficients[i] for i in kids], 1).argmax(1)
    stripes = kind[rows] > 0
    assert stripes.mean() > 0.9
    assert _purity(np.ones(stripes.sum()), kind[rows][stripes]) < 0.7  # the parent holds both sub-types ...
    assert _purity(split[stripes], kind[rows][stripes]) >= 0.95  # ... its children one each
    assert tree.rel_error_after[kids[0]] < tree.rel_error_before[kids[0]]
    again = grow_tree(U, bank, lambda idx: A[idx], lambda: make_estimator("nmf", 2, random_state=0), settings)
    assert np.array_equal(again.components, tree.components)  # deterministic


def test_depth_two_stays_within_the_bound_and_small_nodes_are_not_split():
    from concepts.factorize import make_estimator

    maps, _ = planted_subtypes()
    A = maps.reshape(-1, maps.shape[-1])
    bank = make_estimator("nmf", 2, random_state=0)
    U = np.asarray(bank.fit_transform(A))
    settings = TreeSettings(depth=2, sub_concepts=3, percentile=80, seed=0)
    tree = grow_tree(U, bank, lambda idx: A[idx], lambda: make_estimator("nmf", 3, random_state=0), settings)
    assert tree.attrs["bound"] == 2 * (3 + 9)
    level1 = np.flatnonzero(tree.depth == 1)
    level2 = np.flatnonzero(tree.depth == 2)
    assert len(level1) == 6 and 0 < len(level2) <= 18
    assert set(tree.parent[level2]) <= set(2 + level1)  # grandchildren hang from sub-concepts
    for i in level2:  # their rows are among their parent's strong rows
        assert set(tree.rows[i]) <= set(tree.rows[tree.parent[i] - 2])
    assert tree.attrs["not_split"] == 6 - len(level2) // 3
    assert tree.n_nodes == len(level1) + len(level2)


def test_stage_stores_the_tree_and_hashes_its_settings_only_when_recursive(tmp_path):
    from concepts.factorize.stage import wanted_config

    assert "recursive" not in wanted_config(load_config())  # files made without it keep their config hash
    maps, kind = planted_subtypes()
    write_activations(tmp_path, "cls", maps)
    factorize_run(tmp_path, n_concepts=2, progress=False)
    before = read_concepts(tmp_path / "concepts" / "cls.h5")
    assert before.tree is None
    with pytest.raises(ConfigMismatchError, match="recursive"):
        factorize_run(tmp_path, n_concepts=2, recursive=True, progress=False)
    factorize_run(tmp_path, n_concepts=2, recursive=True, sub_concepts=2, threshold_percentile=50, overwrite=True,
                  progress=False)
    after = read_concepts(tmp_path / "concepts" / "cls.h5")
    assert after.attrs["bank_reused_from"] == before.attrs["creation_id"]  # the bank is kept, not refitted
    assert np.array_equal(after.components, before.components)
    assert np.array_equal(after.coefficients, before.coefficients)
    assert after.attrs["config"]["sub_concepts"] == 2 and after.tree.n_nodes == 4
    assert after.tree.attrs["seconds"] > 0 and after.attrs["creation_id"] != before.attrs["creation_id"]
    tree = RunFolder(tmp_path).concept_tree("cls")
    assert [n.parent for n in tree] == [-1, -1, 0, 0, 1, 1] and tree.children(0)[1].node == 3
    assert tree[2].depth == 1 and np.array_equal(tree[2].rows, after.tree.rows[0])
    assert factorize_run(tmp_path, n_concepts=2, recursive=True, sub_concepts=2, threshold_percentile=50,
                         progress=False).done == ["cls"]
    fresh = tmp_path / "fresh"
    write_activations(fresh, "cls", maps)
    factorize_run(fresh, n_concepts=2, recursive=True, sub_concepts=2, threshold_percentile=50, progress=False)
    again = read_concepts(fresh / "concepts" / "cls.h5")
    assert np.array_equal(again.tree.components, after.tree.components)  # a fresh fit gives the same tree


def test_sub_layer_needs_the_same_rows(tmp_path):
    """Sub-concepts at another cached layer: the same crops (rows) are required; other rows are refused in one
    line that says why."""
    rng = np.random.default_rng(0)
    boxes = np.array([[0, 0, 16, 16], [8, 0, 24, 16], [0, 8, 16, 24], [8, 8, 24, 24]])
    rows = np.abs(rng.normal(size=(6 * 4, 12))).astype(np.float32)
    write_activations(tmp_path, "cls", np.abs(rng.normal(size=(6, 4, 12))), rows=rows, boxes=boxes)
    earlier = np.abs(rng.normal(size=(6 * 4, 5))).astype(np.float32)
    write_activations(tmp_path / "layers" / "early", "cls", np.abs(rng.normal(size=(6, 16, 5))), rows=earlier,
                      boxes=boxes, layer="early")
    assert list(RunFolder(tmp_path).layers()) == ["features", "early"]
    factorize_run(tmp_path, n_concepts=2, recursive=True, sub_concepts=2, threshold_percentile=50,
                  sub_layer="early", progress=False)
    record = read_concepts(tmp_path / "concepts" / "cls.h5")
    assert record.tree.components.shape == (4, 5) and record.tree.attrs["layer"] == "early"
    assert np.isnan(record.tree.rel_error_before).all()  # the parent's bank lives in another space
    assert "extract:early" in record.attrs["inputs"]
    write_activations(tmp_path / "layers" / "early", "cls", np.abs(rng.normal(size=(6, 16, 5))),
                      layer="early")  # patches: 16 positions per image, not the 4 crops
    with pytest.raises(ConceptsError, match="not those of layer features .*same rows"):
        factorize_run(tmp_path, n_concepts=2, recursive=True, sub_concepts=2, sub_layer="early", overwrite=True,
                      progress=False)
    with pytest.raises(ConceptsError, match="no layer 'nope' cached"):
        factorize_run(tmp_path, n_concepts=2, recursive=True, sub_layer="nope", overwrite=True, progress=False)
