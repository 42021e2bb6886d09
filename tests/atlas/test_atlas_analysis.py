"""Numbers and pictures of the atlas, against analytic answers and reference implementations."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from concepts.atlas.analysis import concentration, embed_2d, n_important, similar_concepts, top_rows
from concepts.atlas.images import composite_overlay, heat_overlay, model_input_view, upsample
from concepts.atlas.site import crop_style


def test_concentration_extremes_and_clipping():
    assert concentration(np.array([0, 1.0, 0, 0])) == pytest.approx(1.0)
    assert concentration(np.full(8, 1 / 8)) == pytest.approx(1 / 8)
    # a negative share does not count, the rest is renormalised: [0.5, 0.5] -> 0.5
    assert concentration(np.array([0.6, 0.6, -0.2])) == pytest.approx(0.5)
    assert concentration(np.zeros(3)) == 0.0


def test_n_important_counts_concepts_to_reach_the_mass():
    assert n_important(np.array([0.2, 0.5, 0.3])) == 2  # 0.5 + 0.3 = 0.8
    assert n_important(np.full(10, 0.1)) == 8
    assert n_important(np.array([0.9, 0.05, 0.05])) == 1
    assert n_important(np.array([0.2, 0.5, 0.3]), mass=1.0) == 3


def test_top_rows_takes_the_largest_coefficients_one_per_image():
    coef = np.zeros((6, 2), np.float32)
    coef[:, 1] = [0.1, 0.9, 0.8, 0.3, 0.7, 0.2]
    row_image = np.array([0, 0, 0, 1, 1, 2])
    assert top_rows(coef, 1, 3, row_image, distinct_images=False).tolist() == [1, 2, 4]
    # rows 1 and 2 are the same image: the second pick is row 4 (image 1), then row 5 (image 2)
    assert top_rows(coef, 1, 3, row_image).tolist() == [1, 4, 5]
    assert top_rows(coef, 1, 10, row_image).tolist() == [1, 4, 5]


def test_similar_concepts_finds_a_planted_copy_and_ignores_its_own_class():
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(4, 16)))
    b = np.abs(rng.normal(size=(3, 16)))
    c = np.abs(rng.normal(size=(5, 16)))
    b[2] = 3.0 * a[1]  # same direction, other scale: cosine 1
    a[0] = a[3]  # a duplicate inside class a must not be its neighbour
    result = similar_concepts([a, b, c], k=2)
    best = result[0][1][0]
    assert (best.class_pos, best.concept) == (1, 2) and best.cosine == pytest.approx(1.0, abs=1e-6)
    assert result[1][2][0].class_pos == 0 and result[1][2][0].concept == 1
    for pos, per_class in enumerate(result):
        for neighbours in per_class:
            assert len(neighbours) == 2
            assert all(nb.class_pos != pos for nb in neighbours)
            assert neighbours[0].cosine >= neighbours[1].cosine
    # reference: brute-force cosine for concept 0 of class c
    allv = np.concatenate([a, b])
    cos = (allv @ c[0]) / (np.linalg.norm(allv, axis=1) * np.linalg.norm(c[0]))
    assert result[2][0][0].cosine == pytest.approx(cos.max(), abs=1e-5)


def test_similar_concepts_skips_banks_of_another_dimension():
    result = similar_concepts([np.ones((2, 4)), np.ones((3, 5)), np.eye(2, 4)], k=3)
    assert result[1] == [[], [], []]
    assert all(nb.class_pos == 2 for nb in result[0][0])


def test_embed_2d_separates_two_planted_groups():
    rng = np.random.default_rng(1)
    group_a = rng.normal(0, 0.05, size=(10, 6)) + np.eye(6)[0] * 3
    group_b = rng.normal(0, 0.05, size=(10, 6)) + np.eye(6)[3] * 3
    xy = embed_2d(np.concatenate([group_a, group_b]))
    assert xy.shape == (20, 2) and xy.min() >= 0 and xy.max() <= 1
    gap = abs(xy[:10, 0].mean() - xy[10:, 0].mean())
    assert gap > 0.9  # the first axis is the one that separates them
    assert embed_2d(np.ones((3, 4))).tolist() == [[0.5, 0.5]] * 3
    assert embed_2d(np.zeros((0, 4))).shape == (0, 2)


def test_upsample_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(2).random((3, 2, 7, 5)).astype(np.float32)
    ours = upsample(maps, (40, 33))
    ref = torch.nn.functional.interpolate(torch.from_numpy(maps), size=(40, 33), mode="bilinear",
                                          align_corners=False).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "lanczos"])  # lanczos: bicubic in both
def test_model_input_view_matches_the_model_preprocessing(interpolation):
    from concepts.models.preprocessing import Preprocessing

    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 255, size=(300, 410, 3), dtype=np.uint8))
    prep = {"input_size": 224, "interpolation": interpolation, "crop_pct": 0.875, "mean": [0.5] * 3,
            "std": [0.5] * 3}
    view = model_input_view(photo, prep)
    assert view.size == (224, 224)
    ref = Preprocessing(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in prep.items()}).view(photo)
    np.testing.assert_array_equal(np.asarray(view), np.asarray(ref))


def test_heat_overlays_follow_the_values():
    heat = np.zeros((7, 7), np.float32)
    heat[3, 3] = 1.0
    over = np.asarray(heat_overlay(heat, (255, 0, 0), 56))
    assert over.shape == (56, 56, 4) and (over[..., 0] == 255).all()
    assert over[28, 28, 3] > 150 and over[0, 0, 3] == 0
    two = np.zeros((2, 7, 7), np.float32)
    two[0, :, :3] = 1.0  # left: concept 0
    two[1, :, 4:] = 1.0  # right: concept 1
    comp = np.asarray(composite_overlay(two, [(255, 0, 0), (0, 0, 255)], 70))
    assert tuple(comp[35, 5, :3]) == (255, 0, 0) and tuple(comp[35, 64, :3]) == (0, 0, 255)
    assert comp[35, 5, 3] > 0 and comp[35, 64, 3] > 0


def test_crop_style_puts_the_box_in_the_frame():
    st = crop_style((56, 112, 120, 176), 224, display=128)  # a 64-px box shown 128 px wide: scale 2
    assert st["frame"] == "width:128px;height:128px"
    assert st["img"] == "width:448.0px;height:448.0px;left:-112.0px;top:-224.0px"


def test_display_box_grows_small_cells_inside_the_picture():
    from concepts.evidence.crops import display_box

    assert display_box((51, 51, 115, 115), 224, 64) == (51, 51, 115, 115)  # a crop stays as it is
    assert display_box((96, 96, 128, 128), 224, 64) == (80, 80, 144, 144)  # a 32-px cell, centred
    assert display_box((0, 192, 32, 224), 224, 64) == (0, 160, 64, 224)  # at the corner: shifted inside
    assert display_box((0, 0, 10, 10), 32, 64) == (0, 0, 32, 32)  # never larger than the picture


def test_within_class_similarity_is_the_cosine_matrix():
    from concepts.atlas.analysis import within_class_similarity

    bank = np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 1.0], [0, 0, 0]])
    sim = within_class_similarity(bank)
    assert sim[0, 1] == pytest.approx(1.0) and sim[0, 2] == pytest.approx(0.0)
    assert sim[2, 2] == pytest.approx(1.0) and sim[3, 3] == 0.0  # a dead concept is similar to nothing
    np.testing.assert_allclose(sim, sim.T)


def test_alignment_finds_the_class_a_concept_points_to():
    from concepts.atlas.alignment import Head, align
    from concepts.atlas.analysis import unit_rows

    rng = np.random.default_rng(4)
    weight = rng.normal(size=(50, 16))
    bank = np.stack([3.0 * weight[7] + 0.01 * rng.normal(size=16), -weight[7]])
    head = Head(unit_rows(weight).astype(np.float32), np.zeros(50))
    found = align(bank, head, k=3, own=7)
    assert found[0]["top"][0][0] == 7 and found[0]["top"][0][1] == pytest.approx(1.0, abs=1e-3)
    assert found[0]["own_rank"] == 1
    assert found[1]["own_rank"] == 50 and found[1]["own_cosine"] == pytest.approx(-1.0, abs=1e-5)
    cos = unit_rows(bank)[0] @ unit_rows(weight).T  # brute force
    assert [c for c, _ in found[0]["top"]] == list(np.argsort(-cos)[:3])
    assert align(np.ones((2, 5)), head, 3, 7)[0]["top"] == []  # another dimension: no alignment


def test_bar_chart_draws_negative_values_left_of_zero():
    from concepts.atlas.charts import bar_chart

    chart = bar_chart([0.6, -0.2, 0.1], ["a", "b", "c"], ["a", "b", "c"], ["#000"] * 3, axis="x",
                      low=[0.5, -0.3, np.nan], high=[0.7, -0.1, np.nan])
    zero = chart.zero
    assert zero == pytest.approx(100 * 0.3 / 1.0)  # domain [-0.3, 0.7]
    a, b, c = chart.bars
    assert a.left == pytest.approx(zero) and a.width == pytest.approx(60.0)
    assert b.left + b.width == pytest.approx(zero) and b.width == pytest.approx(20.0)  # ends at zero: left of it
    assert b.ci == (pytest.approx(0.0), pytest.approx(20.0)) and c.ci is None
    assert chart.negative


def test_histogram_counts_every_finite_value():
    from concepts.atlas.charts import histogram

    h = histogram([0.0, 0.1, 0.1, 0.9, np.nan], 3, "x", str)
    assert h.counts == [3, 0, 1] and h.heights[0] == 100.0 and sum(h.counts) == 4


def test_relative_links_between_pages():
    from concepts.atlas.render import minify, rel

    assert rel("classes/a/c1.html", "classes/a/i0.html") == "c1.html"
    assert rel("classes/b.html#c0", "classes/a/c1.html") == "../b.html#c0"
    assert rel("classes/a.html", "index.html") == "classes/a.html"
    assert rel("index.html", "classes/a/i3.html") == "../../index.html"
    assert minify("<p>\n   a  <b>x</b>\n</p>") == "<p> a <b>x</b> </p>"
