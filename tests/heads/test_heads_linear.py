"""A probe is a linear head on the pooled features: attached to a view of the model (the model is left as it is),
recognised by ``linear_head()`` on a global-average-pooled CNN, where the closed forms equal autograd; on a ViT cut
before its last block it is (correctly) not linear. The probe's fit folds the standardisation back exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from concepts.heads.attach import headed_split, with_head
from concepts.heads.linear import LinearHead
from concepts.importance.methods import GradientInput, Occlusion, SobolImportance
from concepts.probe.fitting import fit_probe
from heads_helpers import tiny_split


def _probe(width: int, n_classes: int = 3, seed: int = 0) -> LinearHead:
    rng = np.random.default_rng(seed)
    return LinearHead(rng.normal(size=(n_classes, width)), rng.normal(size=n_classes),
                      [f"c{i}" for i in range(n_classes)])


def test_closed_form_gradient_x_input_of_a_probe_equals_autograd():
    split, _ = tiny_split("test_resnet")  # head-free CNN: global average pool, no classifier
    head = _probe(96)
    headed = headed_split(split, head)
    linear = headed.linear_head()
    assert linear is not None, "a probe on pooled CNN features is linear: the closed forms must apply"
    assert torch.equal(linear[0].cpu(), head.weight.detach().cpu())
    rng = np.random.default_rng(1)
    n_pos, r = headed.grid[0] * headed.grid[1], 4
    U = rng.random((3, n_pos, r)).astype(np.float32)
    W = rng.random((r, 96)).astype(np.float32)
    R = (0.1 * rng.normal(size=(3, n_pos, 96))).astype(np.float32)
    for residual in (None, R):
        exact = GradientInput(exact="always").attribute(U, W, headed.h_positions, 2, linear_head=linear,
                                                        residual=residual)
        auto = GradientInput(exact="off").attribute(U, W, headed.h_positions, 2, linear_head=linear,
                                                    residual=residual)
        assert exact.exact and not auto.exact
        scale = float(np.abs(auto.per_image).max())
        np.testing.assert_allclose(exact.per_image, auto.per_image, rtol=0, atol=1e-5 * max(scale, 1.0))
        np.testing.assert_allclose(exact.positions, auto.positions, rtol=0, atol=1e-5 * max(scale, 1.0))
    # occlusion's closed form too, and Sobol's design path through the same exact logits
    exact = Occlusion(exact="always").attribute(U, W, headed.h_positions, 0, linear_head=linear)
    auto = Occlusion(exact="off").attribute(U, W, headed.h_positions, 0, linear_head=linear)
    np.testing.assert_allclose(exact.per_image, auto.per_image, rtol=0, atol=1e-4)
    design = SobolImportance(designs=4, closed_form="design", exact="always").attribute(
        U, W, headed.h_positions, 0, linear_head=linear)
    sampled = SobolImportance(designs=4, exact="off").attribute(U, W, headed.h_positions, 0, linear_head=linear)
    np.testing.assert_allclose(design.per_image, sampled.per_image, rtol=1e-3, atol=1e-4)


def test_a_head_is_attached_to_a_view_the_model_is_left_as_it_is():
    split, _ = tiny_split("test_resnet", num_classes=10)  # a model with its own classifier
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = split(x)
    head = _probe(96, n_classes=2)
    headed = headed_split(split, head)
    with torch.no_grad():
        pooled = split.model.forward_head(split.model.forward_features(x), pre_logits=True)
        assert torch.allclose(headed(x), head(pooled), atol=1e-5)
        assert torch.equal(split(x), before)  # the backbone's own classifier is still there
    assert split.model.num_classes == 10 and headed.model.num_classes == 2
    assert isinstance(with_head(split.model, None).get_classifier(), nn.Identity)
    assert split.model.get_classifier().out_features == 10


def test_a_probe_on_a_vit_cut_before_its_last_block_is_not_linear():
    split, _ = tiny_split("test_vit")
    headed = headed_split(split, _probe(64))
    assert headed.layer.startswith("blocks.") and headed.linear_head() is None


def test_probe_fit_folds_the_standardisation_back_exactly():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3, size=(3, 8))
    features = {f"k{i}": centres[i] + rng.normal(size=(20, 8)) * (1 + i) for i in range(3)}
    fit = fit_probe(features, holdout=0.25, regularization=1.0, max_iter=1000, seed=0)
    assert fit.weight.shape == (3, 8) and fit.n_test == 15 and fit.n_train == 45
    assert fit.accuracy == pytest.approx(np.mean([v["accuracy"] for v in fit.per_class.values()]))
    assert fit.accuracy > 0.8
    # two classes: the folded two-row head gives sklearn's probabilities
    two = {"a": features["k0"], "b": features["k1"]}
    fit = fit_probe(two, holdout=0.5, regularization=0.5, max_iter=1000, seed=3)
    x = np.concatenate(list(two.values()))
    from concepts.probe.fitting import holdout_split

    train = [v[holdout_split(len(v), 0.5, np.random.default_rng([3, i]))[0]] for i, v in enumerate(two.values())]
    xt = np.concatenate(train)
    mean, std = xt.mean(0), xt.std(0)
    model = LogisticRegression(C=0.5, max_iter=1000).fit((xt - mean) / std, np.repeat([0, 1], [len(t) for t in train]))
    logits = x @ fit.weight.T + fit.bias
    ours = np.exp(logits - logits.max(1, keepdims=True))
    ours /= ours.sum(1, keepdims=True)
    np.testing.assert_allclose(ours, model.predict_proba((x - mean) / std), atol=1e-5)
