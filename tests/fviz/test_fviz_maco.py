"""MACO by construction: the image's spectrum is the fixed one, crops are what they say, the objective is the
formula, the same seed gives the same images, an image does not depend on its batch, tokens layouts work."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from concepts.fviz.crops import crop, grid_boxes, random_boxes
from concepts.fviz.maco import Maco, evaluate, target_seed
from concepts.fviz.objectives import Objective, Target
from concepts.fviz.parametrization import FourierImages
from concepts.fviz.spectrum import (decorrelate, estimate_spectrum, load_spectrum, resize_magnitude,
                                    spectrum_energy)
from fviz_fakerun import SIZE, make_split


def smooth_photos(n=6, size=48, seed=0):
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.random((n, 3, size // 6, size // 6)).astype(np.float32))
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic").clamp(0, 1).numpy()


@pytest.mark.parametrize("size", [64, 63])
def test_spectrum_of_the_image_before_clipping_is_the_fixed_one(size):
    spectrum = estimate_spectrum(smooth_photos()).resized(size)
    generators = [torch.Generator().manual_seed(i) for i in range(3)]
    images = FourierImages(spectrum, FourierImages.random_phase(3, size, generators, "cpu"))
    optimizer = torch.optim.NAdam([images.phase], lr=0.5)
    for _ in range(3):  # the phases move; the magnitude must not
        optimizer.zero_grad()
        images()[:, :, : size // 2].square().mean().backward()
        optimizer.step()
    with torch.no_grad():
        unclipped = images.unclipped().double().numpy()
    z = decorrelate(unclipped, spectrum.mean, spectrum.color)
    magnitude = np.abs(np.fft.rfft2(z, norm="ortho"))
    np.testing.assert_allclose(magnitude, np.broadcast_to(spectrum.magnitude, magnitude.shape), rtol=1e-4,
                               atol=1e-5 * float(spectrum.magnitude.max()))
    # the colours and energy of the photos are kept: per-pixel variance of each decorrelated channel
    np.testing.assert_allclose(z.var(axis=(2, 3)).mean(0), spectrum.variance, rtol=1e-3)
    clipped = images().detach()
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert 0 < float(((clipped == 0) | (clipped == 1)).float().mean()) < 0.2  # the clip is rare, not a no-op


def test_resized_spectrum_keeps_energy_and_frequencies():
    spectrum = estimate_spectrum(smooth_photos(size=48))
    big = spectrum.resized(96)
    np.testing.assert_allclose(spectrum_energy(big.magnitude), spectrum.variance, rtol=1e-5)
    # the same normalised frequency keeps (roughly) its share of the energy: low frequencies dominate in both
    def low_share(m, n):
        f = np.sqrt(np.fft.fftfreq(n)[:, None] ** 2 + np.fft.rfftfreq(n)[None, :] ** 2)
        return float((m ** 2 * (f < 0.1)).sum() / (m ** 2).sum())
    assert abs(low_share(spectrum.magnitude, 48) - low_share(big.magnitude, 96)) < 0.1
    assert resize_magnitude(spectrum.magnitude, 48).shape == (3, 48, 25)


def test_a_spectrum_file_keeps_its_shape_and_takes_the_photos_energy(tmp_path):
    photos = estimate_spectrum(smooth_photos())
    flat = np.ones((32, 17), np.float32) * 7.0
    np.save(tmp_path / "s.npy", flat)
    loaded = load_spectrum(tmp_path / "s.npy", photos)
    assert loaded.magnitude.shape == (3, 32, 17) and loaded.source.startswith("file:")
    assert loaded.magnitude[:, 0, 0].max() == 0  # DC removed (the mean colour is apart)
    rest = loaded.magnitude[0].copy()
    rest[0, 0] = rest[1, 1]
    assert np.allclose(rest, rest[1, 1])  # a flat spectrum stays flat
    np.testing.assert_allclose(spectrum_energy(loaded.magnitude), photos.variance, rtol=1e-5)
    np.save(tmp_path / "bad.npy", np.ones((32, 32)))
    with pytest.raises(ValueError, match="expected a non-negative magnitude"):
        load_spectrum(tmp_path / "bad.npy", photos)


def test_crops_sample_the_pixels_and_wrap_around():
    n = 64
    image = torch.rand(1, 3, n, n, generator=torch.Generator().manual_seed(0))
    centre = torch.tensor([[[0.5, 0.5, 0.5]]])  # half the side, centred: pixels 16..47, one output per pixel
    np.testing.assert_allclose(crop(image, centre, 32)[0], image[0, :, 16:48, 16:48], atol=1e-5)
    corner = torch.tensor([[[0.5, 0.0, 0.0]]])  # centred on the corner: wraps around both borders
    rolled = torch.roll(image, shifts=(16, 16), dims=(2, 3))
    np.testing.assert_allclose(crop(image, corner, 32)[0], rolled[0, :, :32, :32], atol=1e-5)
    boxes = random_boxes([torch.Generator().manual_seed(1)], 500, 0.3, 0.6, "cpu")
    assert boxes.shape == (1, 500, 3) and 0.3 <= boxes[..., 0].min() and boxes[..., 0].max() <= 0.6
    assert boxes[..., 1:].min() >= 0 and boxes[..., 1:].max() < 1
    assert grid_boxes(0.5, 2).shape == (2, 4, 3) and grid_boxes(0.6, 1).shape == (1, 4, 3)


def test_objective_is_dot_times_clamped_cosine_and_targets_share_a_pass():
    split = make_split()
    prep = split.preprocessing
    gen = torch.Generator().manual_seed(0)
    directions = torch.rand(3, split.n_channels, generator=gen)
    targets = [Target("concept", 2), Target("logit", 1), Target("concept", 0)]
    objective = Objective(split, targets, directions, mean=prep.mean, std=prep.std, power=2.0, floor=0.1)
    crops = torch.rand(6, 3, SIZE, SIZE, generator=gen)
    owner = torch.tensor([0, 0, 1, 1, 2, 2])
    scores = objective(crops, owner).detach()
    with torch.no_grad():
        acts = split.g(objective.normalise(crops))
        a = acts.mean(dim=(1, 2))
        logits = split.h(acts)
    for row, t in enumerate(owner.tolist()):
        target = targets[t]
        if target.kind == "concept":
            v = directions[target.index]
            dot = float(a[row] @ v)
            cos = dot / float(a[row].norm() * v.norm())
            assert np.isclose(float(scores[row]), dot * max(cos, 0.1) ** 2, rtol=1e-5)
        else:
            assert np.isclose(float(scores[row]), float(logits[row, 1]), rtol=1e-5)


def _maco(**kw):
    settings = dict(steps=4, lr=0.2, crops=2, crop_min=0.6, crop_max=0.8, noise=0.02, image_size=48, seed=3,
                    batch=8)
    settings.update(kw)
    return Maco(**settings)


def test_same_seed_same_images_and_an_image_does_not_depend_on_its_batch():
    split = make_split()
    spectrum = estimate_spectrum(smooth_photos())
    directions = np.random.default_rng(0).random((3, split.n_channels)).astype(np.float32)
    targets = [Target("concept", k) for k in range(3)] + [Target("logit", 1)]
    first = _maco().visualize(split, targets, directions, spectrum, split.preprocessing)
    again = _maco().visualize(split, targets, directions, spectrum, split.preprocessing)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.transparency, again.transparency)
    other = _maco(seed=4).visualize(split, targets, directions, spectrum, split.preprocessing)
    assert not np.array_equal(first.images, other.images)
    alone = _maco(batch=1).visualize(split, targets[1:2], directions, spectrum, split.preprocessing)
    assert np.abs(alone.images[0].astype(int) - first.images[1].astype(int)).max() <= 1
    assert first.images.shape == (4, 48, 48, 3) and first.images.dtype == np.uint8
    assert first.transparency.max() == pytest.approx(1.0) and first.transparency.min() >= 0
    assert first.curve.shape == (4, 4)
    assert target_seed(3, targets[0]) != target_seed(3, targets[1])
    assert all(p.requires_grad for p in split.parameters())  # gradients of the weights are restored


def test_optimising_raises_the_objective_far_above_random_images():
    split = make_split()
    prep = split.preprocessing
    spectrum = estimate_spectrum(smooth_photos())
    directions = np.random.default_rng(1).random((2, split.n_channels)).astype(np.float32)
    targets = [Target("concept", 0), Target("concept", 1)]
    maco = _maco(steps=40, lr=0.1)
    result = maco.visualize(split, targets, directions, spectrum, prep)
    objective = maco.objective(split, targets, directions, prep)
    made = evaluate(objective, result.images, maco.eval_scale, SIZE)
    start = evaluate(objective, _maco(steps=1, lr=1e-6).visualize(split, targets, directions, spectrum,
                                                                   prep).images, maco.eval_scale, SIZE)
    assert (made.score > 1.3 * start.score).all(), (made.score, start.score)
    assert (result.curve[:, -5:].mean(1) > result.curve[:, :5].mean(1)).all()


def test_tokens_layout_vision_transformer():
    timm = pytest.importorskip("timm")
    from concepts.models.preprocessing import Preprocessing
    from concepts.models.split import ModelSplit

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                              num_classes=3)
    split = ModelSplit(model, input_size=32)
    assert split.layout == "tokens" and split.n_prefix == 1
    prep = Preprocessing(input_size=32, interpolation="bilinear", crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)
    directions = np.random.default_rng(0).normal(size=(2, split.n_channels)).astype(np.float32)  # signed atoms
    targets = [Target("concept", 0), Target("concept", 1), Target("logit", 2)]
    result = _maco(steps=6).visualize(split, targets, directions, estimate_spectrum(smooth_photos()), prep)
    assert result.images.shape == (3, 48, 48, 3) and np.isfinite(result.curve).all()
    assert (result.transparency.reshape(3, -1).max(1) == 1).all()


def test_rgba_puts_the_clipped_transparency_in_the_alpha_channel():
    from concepts.fviz.images import rgba

    image = np.full((4, 5, 3), 7, np.uint8)
    alpha = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    out = rgba(image, alpha, clip_percentile=50)
    assert out.shape == (4, 5, 4) and (out[..., :3] == 7).all()
    assert out[..., 3].max() == 255 and (out[..., 3].ravel()[10:] == 255).all() and out[0, 0, 3] == 0


def test_finished_images_are_rolled_to_centre_their_attention():
    from concepts.fviz.maco import centre_on_attention

    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    alpha = torch.zeros(2, 32, 32)
    alpha[0, 3, 29] = 1.0  # near a corner: wraps around
    alpha[1, 16, 16] = 1.0  # already centred
    rolled, moved = centre_on_attention(images, alpha, 2.0)
    assert moved[0, 16, 16] == 1 and moved[1, 16, 16] == 1
    assert torch.equal(rolled[0], torch.roll(images[0], (13, -13), dims=(1, 2))) and torch.equal(rolled[1], images[1])
