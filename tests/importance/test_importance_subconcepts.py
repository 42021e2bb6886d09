"""Sub-concept importance: computed at the parent's positions through the model's head, checked against a direct
computation with the same tiny network; the shares of a node's children; the tree reader; the export columns."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from concepts.schema import RunFolder, stage_path
from fake_artefacts import write_patches_activations
from importance_tinynet import TinyNet

D, GRID, CLASS_INDEX, PERCENTILE = 16, 7, 2, 70.0


def _run(tmp_path, linear_head: bool):
    """A patches-mode run (tiny model), a recursive concepts file of depth 2, and the importance stage."""
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run
    from concepts.models import ModelCache
    from concepts.models.split import ModelSplit

    rng = np.random.default_rng(0)
    W = np.abs(rng.normal(size=(3, D)))
    U = np.abs(rng.normal(size=(5, GRID * GRID, 3))) ** 2
    maps = (U @ W + 0.05 * np.abs(rng.normal(size=(5, GRID * GRID, D)))).astype(np.float16)
    write_patches_activations(tmp_path, "a", maps, class_index=CLASS_INDEX, image_size=28, model="tiny",
                              weights="random", weights_sha256="0" * 64, config_hash="fake")
    factorize_run(tmp_path, n_concepts=3, recursive=True, depth=2, sub_concepts=2, threshold_percentile=PERCENTILE,
                  progress=False)
    split = ModelSplit(TinyNet(D, 5, linear_head=linear_head), input_size=28)
    assert (split.linear_head() is not None) == linear_head
    models = ModelCache("cpu")
    with h5py.File(stage_path(tmp_path, "extract", "a"), "r") as handle:
        models.adopt(split, {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()})
    importance_run(tmp_path, methods=["gradient", "occlusion"], models=models, n_subsets=8, steps=2, progress=False)
    return maps.astype(np.float32), split


def _estimator(components):
    from concepts.factorize import make_estimator

    est = make_estimator("nmf", len(components), device="cpu")
    est.load_state(np.asarray(components, np.float32), {})
    return est


def _expected(A, split, tree, r):
    """Per node: its positions, sub-coefficients, occlusion and gradient x input per image, computed here from the
    definitions (percentile rule, (S*m)V + (A - SV) at the positions), one node at a time."""
    from concepts.factorize import load_concepts

    bank = load_concepts(tree["run"], "a")
    flat = A.reshape(-1, D)
    U = np.asarray(bank.transform(flat)).reshape(len(A), -1, r)
    coef = {k: U[..., k] for k in range(r)}
    where = {k: None for k in range(r)}
    logit = lambda a: split.h_positions(torch.as_tensor(a, dtype=torch.float32))[:, CLASS_INDEX]  # noqa: E731
    out = {}
    for parent in sorted(set(tree["parent"].tolist())):
        kids = np.flatnonzero(tree["parent"] == parent)
        values = coef[parent] if where[parent] is None else coef[parent][where[parent]]
        threshold = np.percentile(values, PERCENTILE)
        mask = (coef[parent] >= threshold) & (coef[parent] > 0)
        if where[parent] is not None:
            mask &= where[parent]
        V = tree["components"][kids]
        S = np.zeros((*mask.shape, len(kids)), np.float32)
        S[mask] = np.asarray(_estimator(V).transform(A[mask]))
        for j, node in enumerate(r + kids):
            coef[node], where[node] = S[..., j], mask
            part = S[..., j:j + 1] * V[j]
            occlusion = (logit(A) - logit(A - part)).detach().numpy()
            grads = []
            for i in range(len(A)):  # d logit / d m at m = 1, the mask scaling the sub-concept at its positions
                m = torch.ones(1, requires_grad=True)
                edited = torch.as_tensor(A[i:i + 1] - part[i:i + 1]) + m * torch.as_tensor(part[i:i + 1])
                grads.append(torch.autograd.grad(split.h_positions(edited)[0, CLASS_INDEX], m)[0].item())
            empty = ~mask.any(axis=1)
            out[int(node)] = {"occlusion": np.where(empty, np.nan, occlusion),
                              "gradient": np.where(empty, np.nan, grads), "n": int(mask.sum())}
    return out


@pytest.mark.parametrize("linear_head", [False, True], ids=["network", "linear-head"])
def test_subconcept_importance_is_the_effect_of_each_subconcept_at_its_parents_positions(tmp_path, linear_head):
    A, split = _run(tmp_path, linear_head)
    folder = RunFolder(tmp_path)
    record = folder.concepts("a", coefficients=False)
    r, tree = record.n_concepts, record.tree
    assert tree.n_nodes > r * 2 and set(tree.depth.tolist()) == {1, 2}
    importance = folder.importance("a")
    sub = importance.subconcepts
    assert sub.node.tolist() == list(range(r, r + tree.n_nodes)) and sub.presence.shape == (5, tree.n_nodes, 7, 7)
    assert importance.attrs["linear_head"] == linear_head
    expected = _expected(A, split, {"run": tmp_path, "parent": tree.parent, "components": tree.components}, r)
    for i, node in enumerate(sub.node):
        assert sub.n_positions[i] == expected[int(node)]["n"]
        for method in ("occlusion", "gradient"):
            np.testing.assert_allclose(sub.methods[method]["per_image"][:, i], expected[int(node)][method],
                                       rtol=2e-3, atol=2e-4, err_msg=f"{method} of node {node}")
    for method in ("occlusion", "gradient"):
        arrays = sub.methods[method]
        share = np.r_[importance.methods[method].share, arrays["share"]]
        for parent in set(tree.parent.tolist()):  # every node's children split its importance (signed shares)
            kids = np.flatnonzero(tree.parent == parent)
            assert np.nansum(np.abs(arrays["share_of_parent"][kids])) == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(arrays["share"][kids], share[parent] * arrays["share_of_parent"][kids],
                                       rtol=1e-5, atol=1e-7)
            assert np.nansum(np.abs(arrays["share"][kids])) == pytest.approx(abs(share[parent]), abs=1e-5)
    tree_view = folder.concept_tree("a")
    node = tree_view[int(sub.node[0])]
    assert node.share["gradient"] == pytest.approx(sub.methods["gradient"]["share"][0])
    assert node.share_of_parent["gradient"] == pytest.approx(sub.methods["gradient"]["share_of_parent"][0])


def test_export_rows_of_subconcepts(tmp_path):
    from concepts.export import export_run, load_export

    _run(tmp_path, True)
    export = load_export(export_run(tmp_path, formats=["csv"], progress=False))
    table = export.dataframe()
    record = RunFolder(tmp_path).concepts("a", coefficients=False)
    r, tree = record.n_concepts, record.tree
    for method, rows in table.groupby("method"):
        top = rows[rows["depth"] == 0]
        assert sorted(top["concept"]) == list(range(r)) and set(top["parent_concept"]) == {-1}
        sub = rows[rows["depth"] > 0].sort_values("concept")
        assert sub["concept"].tolist() == list(range(r, r + tree.n_nodes))
        assert sub["parent_concept"].tolist() == tree.parent.tolist()
        assert sub["depth"].tolist() == tree.depth.tolist()
        assert top["importance"].abs().sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(export.share("a", method), top.sort_values("concept")["importance"], rtol=1e-6)
    with np.load(tmp_path / "exports" / "subconcept_banks.npz") as banks:
        assert np.array_equal(banks["a"], tree.components)
