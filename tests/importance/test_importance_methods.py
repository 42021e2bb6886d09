"""Importance estimators on tiny hand-built heads: closed forms against the general path."""
import numpy as np
import pytest
import torch

from concepts.errors import ConceptsError
from concepts.importance import GradientInput, Occlusion, SobolImportance, aggregate
from concepts.importance.perturb import ConceptScorer
from importance_tinynet import TinyNet

N_IMG, N_POS, R, D, C = 5, 9, 4, 6, 3
CLS = 1


@pytest.fixture(scope="module")
def linear_problem():
    gen = torch.Generator().manual_seed(0)
    U = torch.rand(N_IMG, N_POS, R, generator=gen)
    W = torch.rand(R, D, generator=gen)
    weight = torch.randn(C, D, generator=gen)
    bias = torch.randn(C, generator=gen)

    def head(pos):  # global average pool + linear
        return pos.mean(dim=1) @ weight.T + bias

    # s_ik = mean_p U_ipk (W_k . w_c), by hand
    s = U.mean(dim=1).numpy() * (W.numpy() @ weight[CLS].numpy())[None]
    return U, W, head, (weight, bias), s


def nonlinear_head_factory(seed=1):
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(D, 5, generator=gen)
    out = torch.randn(5, C, generator=gen)

    def head(pos):
        hidden = torch.tanh(pos @ v)  # per position
        return (hidden.max(dim=1).values + hidden.mean(dim=1)) @ out

    return head


def test_gradient_input_is_exact_logit_share(linear_problem):
    U, W, head, lin, s = linear_problem
    exact = GradientInput().attribute(U, W, head, CLS, linear_head=lin)
    general = GradientInput(exact="off").attribute(U, W, head, CLS, linear_head=lin)
    assert exact.exact and not general.exact
    np.testing.assert_allclose(exact.per_image, s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(general.per_image, s, rtol=1e-4, atol=1e-5)
    # the concept shares plus the bias give the class logit
    logits = head(U @ W)[:, CLS].numpy()
    np.testing.assert_allclose(s.sum(axis=1) + lin[1][CLS].item(), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(general.positions.sum(axis=1), general.per_image, rtol=1e-6)


def test_occlusion_closed_form_and_general_agree(linear_problem):
    U, W, head, lin, s = linear_problem
    exact = Occlusion().attribute(U, W, head, CLS, linear_head=lin)
    general = Occlusion(exact="off", batch_size=3).attribute(U, W, head, CLS)
    np.testing.assert_allclose(exact.per_image, s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(general.per_image, s, rtol=1e-4, atol=1e-5)


def test_sobol_closed_forms_agree_with_sampled_path(linear_problem):
    U, W, head, lin, s = linear_problem
    analytic = SobolImportance().attribute(U, W, head, CLS, linear_head=lin)
    np.testing.assert_allclose(analytic.per_image, s**2 / (s**2).sum(axis=1, keepdims=True), rtol=1e-5)
    # "design" closed form: the same estimator on exact logits of the same masks -> identical to the sampled path
    design = SobolImportance(designs=32, closed_form="design").attribute(U, W, head, CLS, linear_head=lin)
    sampled32 = SobolImportance(designs=32, exact="off", batch_size=50).attribute(U, W, head, CLS)
    assert design.exact and not sampled32.exact
    np.testing.assert_allclose(design.per_image, sampled32.per_image, atol=1e-4)
    # with many designs the sampled path converges to the analytic value
    sampled = SobolImportance(designs=1024, sampler="sobol-scrambled", exact="off", batch_size=4096).attribute(
        U, W, head, CLS)
    np.testing.assert_allclose(sampled.per_image, analytic.per_image, atol=0.02)


def test_zeroed_concept_gets_zero_importance(linear_problem):
    U, W, head, lin, _ = linear_problem
    W0 = W.clone()
    W0[2] = 0
    nonlinear = nonlinear_head_factory()
    for method in (SobolImportance(), GradientInput(), Occlusion()):
        for exact in ("auto", "off"):
            method.exact = exact
            res = method.attribute(U, W0, head, CLS, linear_head=lin)
            assert np.all(np.abs(res.per_image[:, 2]) < 1e-6), (method.method, exact)
            assert np.abs(res.per_image[:, [0, 1, 3]]).max() > 1e-3
        res = method.attribute(U, W0, nonlinear, CLS)
        assert np.all(np.abs(res.per_image[:, 2]) < 1e-6), method.method


def test_nonlinear_head_against_direct_computation():
    gen = torch.Generator().manual_seed(3)
    U = torch.rand(3, N_POS, R, generator=gen)
    W = torch.rand(R, D, generator=gen)
    A = U @ W + 0.1 * torch.rand(3, N_POS, D, generator=gen)
    residual = A - U @ W
    head = nonlinear_head_factory(2)
    occ = Occlusion(batch_size=2).attribute(U, W, head, CLS, residual=residual)
    full = head(A)[:, CLS]
    for k in range(R):
        mask = torch.ones(R)
        mask[k] = 0
        dropped = head((U * mask) @ W + residual)[:, CLS]
        np.testing.assert_allclose(occ.per_image[:, k], (full - dropped).numpy(), rtol=1e-4, atol=1e-5)
    # gradient x input against central finite differences along U_k (scaling U_k by 1 +- eps)
    gxi = GradientInput().attribute(U, W, head, CLS, residual=residual)
    eps = 1e-3
    for k in range(R):
        up, down = torch.ones(R, dtype=torch.float64), torch.ones(R, dtype=torch.float64)
        up[k], down[k] = 1 + eps, 1 - eps
        Ud, Wd, Rd = U.double(), W.double(), residual.double()

        def f(m):
            return head(((Ud * m) @ Wd + Rd).float())[:, CLS].double()

        fd = (f(up) - f(down)) / (2 * eps)
        np.testing.assert_allclose(gxi.per_image[:, k], fd.numpy(), rtol=2e-2, atol=1e-3)


def test_sobol_sampled_result_does_not_depend_on_chunking():
    gen = torch.Generator().manual_seed(4)
    U, W = torch.rand(2, N_POS, R, generator=gen), torch.rand(R, D, generator=gen)
    head = nonlinear_head_factory()
    a = SobolImportance(designs=16, batch_size=1).attribute(U, W, head, 0)
    b = SobolImportance(designs=16, batch_size=1000).attribute(U, W, head, 0)
    np.testing.assert_allclose(a.per_image, b.per_image, atol=1e-5)
    assert a.per_image.shape == (2, R) and np.all(a.per_image >= -1e-6)


def test_prefix_is_passed_per_image():
    gen = torch.Generator().manual_seed(5)
    U, W = torch.rand(3, 4, 2, generator=gen), torch.rand(2, D, generator=gen)
    prefix = torch.rand(3, 1, D, generator=gen) * 10

    def head(pos, pre):
        return (pos.mean(1) * pre[:, 0]) @ torch.ones(D, 1)

    occ = Occlusion(batch_size=2).attribute(U, W, head, 0, prefix=prefix)
    for i in range(3):
        full = head((U[i : i + 1] @ W), prefix[i : i + 1])[0, 0]
        drop0 = head((U[i : i + 1] * torch.tensor([0.0, 1.0])) @ W, prefix[i : i + 1])[0, 0]
        assert occ.per_image[i, 0] == pytest.approx(float(full - drop0), rel=1e-5)


def test_aggregate_share_and_confidence_interval():
    per_image = np.array([[1.0, 3.0], [3.0, 5.0], [np.nan, np.nan], [2.0, 4.0]])
    mean, share, low, high, slow, shigh = aggregate(per_image, confidence=0.95)
    np.testing.assert_allclose(mean, [2.0, 4.0])
    np.testing.assert_allclose(share, [1 / 3, 2 / 3])
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n)
    np.testing.assert_allclose(high - mean, half, rtol=1e-6)
    np.testing.assert_allclose(mean - low, half, rtol=1e-6)
    np.testing.assert_allclose(slow, low / 6, rtol=1e-6)


def test_bad_inputs_raise_concepts_errors():
    U, W = torch.rand(2, 4, 3), torch.rand(3, 5)
    with pytest.raises(ConceptsError):
        ConceptScorer(U, torch.rand(2, 5), lambda p: p.mean(1), 0)
    with pytest.raises(ConceptsError):
        GradientInput(exact="always").attribute(U, W, lambda p: p.mean(1), 0)
    with pytest.raises(ConceptsError):
        SobolImportance(sampler="latin")
    with pytest.raises(ConceptsError):
        ConceptScorer(U, W, lambda p: p.mean(1), 0, residual=torch.rand(2, 4, 4))


@pytest.mark.parametrize("linear", [True, False])
def test_model_split_head_class_only_classifier_is_exact(linear):
    from concepts.models.split import ModelSplit

    split = ModelSplit(TinyNet(D, C, linear_head=linear, seed=7), input_size=12)  # 3x3 grid
    assert (split.linear_head() is not None) == linear
    gen = torch.Generator().manual_seed(8)
    U, W = torch.rand(3, 9, R, generator=gen), torch.rand(R, D, generator=gen)
    residual = 0.1 * torch.rand(3, 9, D, generator=gen)
    fast = ConceptScorer(U, W, split.h_positions, CLS, residual=residual, batch_size=5)
    plain = ConceptScorer(U, W, lambda p: split.h_positions(p), CLS, residual=residual, batch_size=5)
    assert fast._classifier() is split.model.classifier and plain._classifier() is None
    masks = torch.rand(12, R, generator=gen)
    images = np.repeat(np.arange(3), 4)
    np.testing.assert_allclose(fast.scores(images, masks), plain.scores(images, masks), rtol=1e-5, atol=1e-6)
    want = split.h((((U * masks[::4, None]) @ W) + residual).reshape(3, 3, 3, D))[:, CLS]
    np.testing.assert_allclose(fast.scores(np.arange(3), masks[::4]), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.gradient_input(), plain.gradient_input(), rtol=1e-5, atol=1e-6)
    assert "forward" not in vars(split.model.classifier), "the classifier is restored"
    sobol = SobolImportance(designs=8, exact="off").attribute(U, W, split.h_positions, CLS, residual=residual)
    assert np.isfinite(sobol.per_image).all()


def test_vit_tokens_with_prefix_through_model_split():
    """A (tiny, random) timm ViT: class token passed per image; residual restores h(A) exactly."""
    timm = pytest.importorskip("timm")
    from concepts.models.split import ModelSplit

    torch.manual_seed(0)
    split = ModelSplit(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=7,
                                         depth=2, embed_dim=32, num_heads=2),
                       input_size=64)
    assert split.layout == "tokens" and split.n_prefix == 1 and split.linear_head() is None
    with torch.no_grad():
        a = split.g(torch.randn(3, 3, 64, 64))
        logits = split.h(a)[:, 2]
    pos, prefix = split.positions(a), split.prefix(a)
    gen = torch.Generator().manual_seed(1)
    U, W = torch.rand(3, pos.shape[1], 4, generator=gen), torch.rand(4, pos.shape[2], generator=gen)
    residual = pos - U @ W
    scorer = ConceptScorer(U, W, split.h_positions, 2, residual=residual, prefix=prefix)
    np.testing.assert_allclose(scorer.full_scores(), logits.numpy(), rtol=1e-4, atol=1e-4)
    occ = Occlusion().attribute(U, W, split.h_positions, 2, residual=residual, prefix=prefix)
    with torch.no_grad():
        dropped = split.h_positions((U * torch.tensor([1.0, 0, 1, 1])) @ W + residual, prefix)[:, 2]
    np.testing.assert_allclose(occ.per_image[:, 1], (logits - dropped).numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("cls, params", [
    (SobolImportance, dict(designs=8, sampler="sobol-scrambled", seed=3, exact="off", batch_size=7)),
    (GradientInput, dict(exact="off", confidence=0.9)),
    (Occlusion, dict(exact="off", batch_size=5)),
])
def test_importance_estimators_are_sklearn_clonable(linear_problem, cls, params):
    """sklearn.base.clone copies every parameter, and the copy attributes exactly the same importances."""
    from sklearn.base import BaseEstimator, clone

    U, W, head, lin, _ = linear_problem
    original = cls(**params)
    assert isinstance(original, BaseEstimator)
    copy = clone(original)
    assert copy is not original and copy.get_params() == original.get_params()
    for key, value in params.items():
        assert copy.get_params()[key] == value
    a = original.attribute(U, W, head, CLS, linear_head=lin)
    b = copy.attribute(U, W, head, CLS, linear_head=lin)
    np.testing.assert_array_equal(a.per_image, b.per_image)
    assert a.settings == b.settings and "device" not in a.settings
    # set_params changes the copy only, and a bad value set later is still refused
    copy.set_params(confidence=0.5)
    assert original.confidence != 0.5
    if cls is SobolImportance:
        copy.set_params(sampler="latin")
        with pytest.raises(ConceptsError, match="unknown sampler"):
            copy.attribute(U, W, head, CLS)


def test_importance_settings_record_the_parameters_but_the_device(linear_problem):
    U, W, head, lin, _ = linear_problem
    result = SobolImportance(designs=4, device="cpu").attribute(U, W, head, CLS, linear_head=lin)
    assert result.settings == dict(exact="auto", batch_size=128, confidence=0.95, progress=False, designs=4,
                                   sampler="halton", estimator="jansen", seed=0, closed_form="analytic",
                                   evaluations=0, precision=None)
    from concepts.importance import make_method

    made = make_method("occlusion", designs=4, sampler="halton", batch_size=9)  # Sobol-only keys are ignored
    assert made.get_params() == dict(exact="auto", batch_size=9, device=None, confidence=0.95, progress=False, precision=None)
