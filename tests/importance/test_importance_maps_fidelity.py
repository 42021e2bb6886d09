"""Concept maps and fidelity metrics on hand-built cases with known answers."""
import numpy as np
import pytest
import torch

from concepts.importance import (
    ConceptScorer,
    GradientInput,
    c_deletion,
    c_insertion,
    c_mufidelity,
    contribution_maps,
    crop_heatmaps,
    presence_maps,
    reconstruction_fidelity,
    upsample,
)


def test_presence_maps_follow_row_major_grid():
    U = np.zeros((2, 6, 3))
    U[1, 4, 2] = 7.0  # position 4 of a 2x3 grid is (1, 1)
    maps = presence_maps(U, (2, 3))
    assert maps.shape == (2, 3, 2, 3)
    assert maps[1, 2, 1, 1] == 7.0 and maps.sum() == 7.0


def test_contribution_maps_sum_to_gradient_input():
    gen = torch.Generator().manual_seed(0)
    U, W = torch.rand(2, 4, 3, generator=gen), torch.rand(3, 5, generator=gen)
    w, b = torch.randn(2, 5, generator=gen), torch.zeros(2)
    res = GradientInput().attribute(U, W, None, 1, linear_head=(w, b))
    maps = contribution_maps(res.positions, (2, 2))
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), res.per_image, rtol=1e-6)
    # exact per-position term U_pk (W_k . w_c) / N
    np.testing.assert_allclose(maps[0, 1, 0, 1], U[0, 1, 1].item() * (W[1] @ w[1]).item() / 4, rtol=1e-5)


def test_upsample_constant_and_shape():
    maps = np.ones((2, 3, 7, 7)) * 2.5
    out = upsample(maps, 224)
    assert out.shape == (2, 3, 224, 224)
    np.testing.assert_allclose(out, 2.5, rtol=1e-6)
    one = np.zeros((7, 7))
    one[0, 0] = 1
    up = upsample(one, (14, 28))
    assert up.shape == (14, 28) and up[0, 0] == pytest.approx(1.0) and up[-1, -1] == 0


def test_crop_heatmaps_average_over_covering_boxes():
    coef = np.array([[1.0, 0.0], [3.0, 2.0]])
    boxes = np.array([[0, 0, 4, 4], [2, 2, 6, 6]])
    maps = crop_heatmaps(coef, boxes, 8)
    assert maps.shape == (2, 8, 8)
    assert maps[0, 0, 0] == 1.0  # first box only
    assert maps[0, 3, 3] == 2.0  # both: (1 + 3) / 2
    assert maps[0, 5, 5] == 3.0 and maps[1, 5, 5] == 2.0
    assert maps[0, 7, 7] == 0.0 and maps[0, 0, 5] == 0.0  # uncovered


@pytest.fixture()
def linear_scorer():
    gen = torch.Generator().manual_seed(1)
    n, N, r, D = 6, 4, 5, 7
    U = torch.rand(n, N, r, generator=gen)
    W = torch.rand(r, D, generator=gen)
    w, b = torch.randn(3, D, generator=gen), torch.randn(3, generator=gen)
    s = U.mean(1).numpy() * (W.numpy() @ w[0].numpy())[None]
    return U, W, (w, b), s


def test_deletion_insertion_on_linear_head(linear_scorer):
    U, W, lin, s = linear_scorer
    scorer = ConceptScorer(U, W, None, 0, linear_head=lin)
    good = c_deletion(scorer, s)  # per-image true ranking
    bad = c_deletion(scorer, -s)
    assert good["auc"] < bad["auc"]
    assert c_insertion(scorer, s)["auc"] > c_insertion(scorer, -s)["auc"]
    # the curve at 0 removed is the full logit, at all removed the bias
    full = scorer.full_scores().mean()
    assert good["curve"][0] == pytest.approx(full, rel=1e-6)
    assert good["curve"][-1] == pytest.approx(lin[1][0].item(), rel=1e-5)
    # linear head: the deletion curve at step j is the full logit minus the j largest s
    j = 2
    top = np.sort(s, axis=1)[:, ::-1][:, :j].sum(axis=1)
    assert good["curve"][j] == pytest.approx(full - top.mean(), rel=1e-5)
    # general (head-calling) path gives the same curves
    head = lambda p: p.mean(1) @ lin[0].T + lin[1]  # noqa: E731
    slow = c_deletion(ConceptScorer(U, W, head, 0, batch_size=7), s)
    np.testing.assert_allclose(slow["curve"], good["curve"], rtol=1e-5)
    # fewer steps
    assert len(c_deletion(scorer, s, steps=2)["curve"]) == 3


def test_mufidelity_exact_for_true_linear_contributions(linear_scorer):
    U, W, lin, s = linear_scorer
    scorer = ConceptScorer(U, W, None, 0, linear_head=lin)
    # drop of a subset = sum of its s_k exactly -> Pearson correlation 1
    assert c_mufidelity(scorer, s, correlation="pearson", n_subsets=64)["value"] == pytest.approx(1.0, abs=1e-6)
    assert c_mufidelity(scorer, s, correlation="spearman", n_subsets=64)["value"] == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    assert c_mufidelity(scorer, rng.random(s.shape), correlation="pearson")["value"] < 0.9


def test_probability_score_matches_softmax(linear_scorer):
    U, W, lin, _ = linear_scorer
    scorer = ConceptScorer(U, W, None, 2, linear_head=lin, score="probability")
    logits = (U @ W).mean(1) @ lin[0].T + lin[1]
    np.testing.assert_allclose(scorer.full_scores(), torch.softmax(logits, -1)[:, 2].numpy(), rtol=1e-5)


def test_reconstruction_fidelity_reports_logit_loss():
    gen = torch.Generator().manual_seed(2)
    U, W = torch.rand(4, 9, 3, generator=gen), torch.rand(3, 5, generator=gen)
    w, b = torch.rand(2, 5, generator=gen), torch.zeros(2)
    head = lambda p: p.mean(1) @ w.T + b  # noqa: E731
    exact = reconstruction_fidelity(U @ W, U, W, head, 1)
    assert exact["relative_error"] < 1e-6 and exact["logit_ratio"] == pytest.approx(1.0, rel=1e-6)
    halved = reconstruction_fidelity(U @ W, U, W * 0.5, head, 1)
    assert halved["logit_ratio"] == pytest.approx(0.5, rel=1e-5)
    assert halved["relative_error"] == pytest.approx(0.5, rel=1e-5)
