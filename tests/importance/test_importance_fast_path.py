"""The fast general path (transformer tail, class-token block, factored head, shared fidelity masks) gives the
numbers of the reference path (the hooked whole model on dense activations, every metric on its own), and
signed importances get shares of their absolute sum."""
import h5py
import numpy as np
import pytest
import torch

from concepts.importance import ConceptScorer, GradientInput, Occlusion, SobolImportance
from concepts.importance.compute import ImageProgress
from concepts.importance.fidelity import c_deletion, c_insertion, c_mufidelity
from concepts.importance.methods import aggregate
from concepts.importance.perturb import MaskRecorder, dense_only

CLS, R = 3, 4


@pytest.fixture(scope="module")
def tiny_vit():
    """A 3-block ViT (random weights) on 32-pixel images: 16 patch tokens plus the class token, 48 channels."""
    import timm

    from concepts.models.split import ModelSplit

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=3,
                                  embed_dim=48, num_heads=3, num_classes=7)
        for p in model.parameters():  # larger weights than timm's init, so that the head is far from linear
            p.data.normal_(0, 0.3)
    split = ModelSplit(model, input_size=32)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        a = split.g(torch.randn(5, 3, 32, 32, generator=gen))
    pos, prefix = split.positions(a), split.prefix(a)
    W = torch.randn(R, pos.shape[-1], generator=gen)
    U = torch.rand(pos.shape[0], pos.shape[1], R, generator=gen)
    return split, U, W, pos - U @ W, prefix


def _reference(fn, split):
    split.fast_head = False
    try:
        with dense_only():
            return fn()
    finally:
        split.fast_head = True


def test_vit_cut_runs_only_the_class_token_of_the_last_block(tiny_vit):
    split, U, W, res, prefix = tiny_vit
    assert split.layer == "blocks.1" and split.head_path == "class-token"
    with torch.no_grad():
        a = split.from_positions(U @ W + res, prefix)
        fast = split.h(a)
        split.fast_head = False
        slow = split.h(a)
        split.fast_head = True
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    scorer = ConceptScorer(U, W, split.h_positions, CLS, residual=res, prefix=prefix)
    assert scorer._factored() is not None  # the factored head passed its check and is used


@pytest.mark.parametrize("method", [SobolImportance(designs=8), Occlusion(), GradientInput()],
                         ids=["sobol", "occlusion", "gradient"])
def test_fast_general_path_gives_the_reference_numbers(tiny_vit, method):
    split, U, W, res, prefix = tiny_vit

    def run():
        return method.attribute(U, W, split.h_positions, CLS, residual=res, prefix=prefix)

    fast, ref = run(), _reference(run, split)
    scale = np.abs(ref.per_image).max()
    assert scale > 1e-3  # a real signal, not zeros on both sides
    # float32 rounding in another order: logits within ~1e-6; Sobol's variance ratios amplify it a little
    np.testing.assert_allclose(fast.per_image, ref.per_image, rtol=1e-3, atol=1e-4 * scale)


def test_shared_fidelity_masks_give_each_metric_its_own_numbers(tiny_vit):
    split, U, W, res, prefix = tiny_vit
    rng = np.random.default_rng(0)
    rankings = {"a": rng.normal(size=R), "b": rng.normal(size=R)}
    rankings["c"] = rankings["a"].copy()  # equal rankings share their deletion and insertion masks
    per_image = rng.normal(size=(U.shape[0], R))

    def metrics(scorer):
        return {name: (c_deletion(scorer, imp)["curves"], c_insertion(scorer, imp)["curves"],
                       c_mufidelity(scorer, per_image, n_subsets=16)["per_image"])
                for name, imp in rankings.items()}

    plain = ConceptScorer(U, W, split.h_positions, CLS, residual=res, prefix=prefix)
    want = _reference(lambda: metrics(plain), split)
    recorder = MaskRecorder(U.shape[0], R)
    metrics(recorder)
    images, masks = recorder.pairs()
    memo = ConceptScorer(U, W, split.h_positions, CLS, residual=res, prefix=prefix, memo=True)
    memo.scores(images, masks)
    evaluated = memo.evaluations
    got = metrics(memo)
    assert memo.evaluations == evaluated  # every mask was already known
    asked = U.shape[0] * 3 * (2 * (R + 1) + 17)  # what the three rankings ask for one by one
    assert evaluated < 0.6 * asked
    for name in rankings:
        for g, w in zip(got[name], want[name]):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_progress_callback_counts_every_evaluation(tiny_vit):
    split, U, W, res, prefix = tiny_vit
    seen = []
    SobolImportance(designs=4, batch_size=7).attribute(U, W, split.h_positions, CLS, residual=res, prefix=prefix,
                                                       on_rows=seen.append)
    assert sum(seen) == U.shape[0] * 4 * (R + 2) and max(seen) <= 7 and len(seen) > 1

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    progress = ImageProgress(bar)
    callback = progress.piece(images=2.0, rows=10)
    for _ in range(10):
        callback(1)
    assert bar.n == 2
    progress.settle(5)
    assert bar.n == 5


def test_signed_shares_with_cancelling_contributions():
    # contributions +3 and -3 cancel: the signed sum (0.5) would give shares of 600% and -600%
    per_image = np.array([[3.0, -2.9, 0.5], [3.0, -3.1, 0.5], [3.0, -3.0, 0.5]])
    mean, share, low, high, share_low, share_high = aggregate(per_image)
    np.testing.assert_allclose(mean, [3.0, -3.0, 0.5])
    np.testing.assert_allclose(share, np.array([3.0, -3.0, 0.5]) / 6.5)
    assert np.abs(share).sum() == pytest.approx(1.0) and (np.abs(share) <= 1).all()
    np.testing.assert_allclose(share_low, low / 6.5)
    np.testing.assert_allclose(share_high, high / 6.5)
    # an exact cancellation still gives shares
    _, share, *_ = aggregate(np.array([[1.0, -1.0], [1.0, -1.0]]))
    np.testing.assert_allclose(share, [0.5, -0.5])
    # non-negative importances (Sobol): the plain fraction of the total
    _, share, *_ = aggregate(np.array([[1.0, 3.0], [1.0, 3.0]]))
    np.testing.assert_allclose(share, [0.25, 0.75])


def test_files_written_before_signed_shares_are_read_with_them(tmp_path):
    from concepts.schema.importance import read_importance
    from fake_artefacts import write_importance

    raw = np.array([3.0, -3.0, 0.5], np.float32)
    path = write_importance(tmp_path, "a", {"gradient": {"per_image": np.tile(raw, (2, 1)), "class_importance": raw,
                                                         "share": raw / raw.sum()}},
                            presence=np.zeros((2, 3, 2, 2), np.float32))
    with h5py.File(path, "a") as handle:
        if "share" in handle["gradient"].attrs:
            del handle["gradient"].attrs["share"]  # as written before the definition was recorded
    back = read_importance(path).methods["gradient"]
    np.testing.assert_allclose(back.share, raw / 6.5, rtol=1e-6)
