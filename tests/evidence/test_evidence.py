"""The numbers every reader is shown (concepts.evidence), against hand-computed values on small classes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from concepts.evidence import (DIAGNOSTIC_COLUMNS, EXPLANATIONS, choose_method, class_diagnostics,
                               coincident_methods, input_box_to_original, method_values, ranking, top_crops)
from concepts.evidence.numbers import num, pct
from concepts.schema.classdata import ClassData
from concepts.schema.importance import MethodImportance


def _method(name, per_image, exact=True, ci=None):
    per_image = np.asarray(per_image, np.float64)
    mean = per_image.mean(axis=0)
    low, high = ci if ci is not None else (mean - 0.1, mean + 0.1)
    total = mean.sum()
    return MethodImportance(name, per_image, mean, mean / total, low, high, low / total, high / total,
                            np.argsort(-mean), attrs={"exact": exact})


def _class(methods, *, fidelity=None, linear=True, converged=True, logit=(10.0, 12.0)) -> ClassData:
    n, r = 2, 3
    return ClassData(
        class_id="c", class_name="c", class_index=4, stem="c", paths={}, act_attrs={"preprocessing": {}},
        concept_attrs={"rel_error": 0.4, "converged": converged, "n_iter": 7, "params": {"max_iter": 200}},
        importance_attrs={"linear_head": linear}, image_paths=["a.jpg", "b.jpg"], image_sha256=["", ""],
        skipped=np.zeros(n, bool), logit=np.asarray(logit, np.float32), row_image=np.zeros(0, int),
        row_box=np.zeros((0, 4), int), components=np.eye(r, 5, dtype=np.float32),
        coefficients=np.zeros((0, r), np.float32), methods=methods, presence=None,
        fidelity_attrs=fidelity or {})


GRADIENT = [[5.0, 2.0, -1.0], [7.0, 1.0, -1.0]]  # concept means 6, 1.5, -1: the concepts carry 6.5 logit


def test_the_logit_splits_into_concepts_residual_and_bias():
    fidelity = {"reconstruction_logit_original": 11.0, "reconstruction_logit_reconstructed": 7.0,
                "reconstruction_logit_correlation": 0.9, "reconstruction_relative_error": 0.6,
                "gradient_c_deletion": 3.0, "gradient_c_insertion": 8.0, "gradient_c_mufidelity": 0.95}
    d = class_diagnostics(_class({"gradient": _method("gradient", GRADIENT)}, fidelity=fidelity))
    assert d.decomposition == "exact"
    assert d.logit_concepts == pytest.approx(6.5) and d.logit_bias == pytest.approx(0.5)
    assert d.logit_residual == pytest.approx(4.0)
    assert d.explained_share == pytest.approx(6.5 / 11) and d.residual_share == pytest.approx(4 / 11)
    assert d.explained_share + d.residual_share + d.bias_share == pytest.approx(1.0)
    assert (d.rel_error, d.rel_error_positions, d.converged, d.n_iter, d.max_iter) == (0.4, 0.6, 1, 7, 200)
    row = d.row()
    assert list(row) == list(DIAGNOSTIC_COLUMNS) and row["gradient_c_deletion"] == 3.0
    assert np.isnan(row["sobol_c_deletion"])
    assert set(EXPLANATIONS) >= {"explained_share", "residual_share", "rel_error", "converged", "c_deletion"}


def test_without_a_linear_head_only_the_reconstruction_is_known():
    fidelity = {"reconstruction_logit_original": 10.0, "reconstruction_logit_reconstructed": 6.0}
    d = class_diagnostics(_class({"gradient": _method("gradient", GRADIENT, exact=False)}, fidelity=fidelity,
                                 linear=False, converged=False))
    assert d.decomposition == "reconstruction" and d.explained_share == pytest.approx(0.6)
    assert np.isnan(d.logit_bias) and np.isnan(d.bias_share) and d.converged == 0
    legacy = class_diagnostics(_class({}, fidelity={}))  # no importance: the model's mean logit, nothing else
    assert legacy.decomposition == "none" and legacy.logit == pytest.approx(11.0)
    assert np.isnan(legacy.explained_share)


def test_values_are_labelled_for_what_they_are():
    gradient = method_values(_class({"gradient": _method("gradient", GRADIENT)}), "gradient", 11.0)
    assert gradient.axis == "share of the class logit" and gradient.of_logit
    np.testing.assert_allclose(gradient.values, [6 / 11, 1.5 / 11, -1 / 11])  # signed: the third lowers the logit
    np.testing.assert_allclose(gradient.low, [5.9 / 11, 1.4 / 11, -1.1 / 11])
    assert gradient.order.tolist() == [0, 1, 2] and gradient.raw_unit == "logit"
    fallback = method_values(_class({"gradient": _method("gradient", GRADIENT)}), "gradient", -2.0)
    assert not fallback.of_logit and "not positive" in fallback.axis
    np.testing.assert_allclose(fallback.values, np.array([6, 1.5, -1]) / 6.5)
    sobol = method_values(_class({"sobol": _method("sobol", [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])}), "sobol", 11.0)
    assert sobol.axis == "share of the summed Sobol indices" and not sobol.of_logit
    np.testing.assert_allclose(sobol.values, [0.6, 0.25, 0.15])
    assert ranking(np.array([0.1, np.nan, 0.5, 0.5])).tolist() == [2, 3, 0, 1]


def test_gradient_and_occlusion_coincide_by_construction_on_a_linear_head():
    same = {"gradient": _method("gradient", GRADIENT), "occlusion": _method("occlusion", GRADIENT)}
    assert coincident_methods(_class(same)) == {"occlusion": "gradient"}
    other = {"gradient": _method("gradient", GRADIENT, exact=False),
             "occlusion": _method("occlusion", np.asarray(GRADIENT) * [1, 2, 3], exact=False)}
    assert coincident_methods(_class(other, linear=False)) == {}
    claimed = {"gradient": _method("gradient", GRADIENT), "occlusion": _method("occlusion", np.asarray(GRADIENT) * 2)}
    assert coincident_methods(_class(claimed)) == {}  # a closed form whose numbers differ is not taken on trust
    assert choose_method(["sobol", "gradient"]) == ("gradient", "")
    assert choose_method(["sobol", "gradient"], "sobol") == ("sobol", "")
    method, note = choose_method(["sobol"], "occlusion")
    assert method == "sobol" and "occlusion was not computed" in note


def test_numbers_never_read_minus_zero():
    assert pct(-0.00004) == "0.0%" and pct(0.674) == "67.4%" and pct(-0.05) == "-5.0%"
    assert pct(0.1, signed=True) == "+10.0%" and pct(float("nan")) == "n/a" and pct(None) == "n/a"
    assert num(-0.0) == "0" and num(2.0, signed=True) == "+2" and num(-1.234, 2) == "-1.2"


def test_boxes_map_to_the_original_photo():
    prep = {"input_size": 224, "crop_pct": 0.875}
    # 256 x 256 photo: resized to 256 (no change), centre crop at 16: input pixel x is original x + 16
    assert input_box_to_original((0, 0, 224, 224), 256, 256, prep) == (16, 16, 240, 240)
    # 500 x 375: shorter side 375 -> 256 (scale 375/256), width 341, left margin round(117/2) = 58
    x0, y0, x1, y1 = input_box_to_original((0, 0, 64, 64), 500, 375, prep)
    scale = 375 / 256
    assert (x0, y0) == (int(58 * 500 / 341), int(16 * scale)) and x1 - x0 in (93, 94, 95)


def test_a_crop_of_the_original_is_the_crop_the_model_saw(tmp_path: Path):
    """The box mapped to the original, resized to model-input pixels, shows what the model-input view shows."""
    from concepts.atlas.images import model_input_view

    rng = np.random.default_rng(0)
    smooth = rng.random((8, 11, 3)) * 255
    photo = Image.fromarray(smooth.astype(np.uint8)).resize((440, 320), Image.BICUBIC)
    prep = {"input_size": 224, "crop_pct": 0.875, "interpolation": "bicubic"}
    view = np.asarray(model_input_view(photo, prep), np.float32)
    box = (40, 100, 104, 164)
    cut = photo.crop(input_box_to_original(box, *photo.size, prep)).resize((64, 64), Image.BICUBIC)
    assert np.abs(np.asarray(cut, np.float32) - view[100:164, 40:104]).mean() < 6.0


def test_top_crops_are_the_largest_coefficients_one_per_image():
    data = _class({})
    data.row_image = np.array([0, 0, 1, 1])
    data.row_box = np.array([[0, 0, 64, 64], [51, 0, 115, 64], [0, 51, 64, 115], [102, 102, 166, 166]])
    data.coefficients = np.array([[0.9, 0, 1], [0.95, 0, 0], [0.1, 0, 0], [0.2, 0, 0]], np.float32)
    data.image_width, data.image_height = np.array([256, 0]), np.array([256, 0])
    data.act_attrs = {"preprocessing": {"input_size": 224, "crop_pct": 0.875}}
    crops = top_crops(data, 5)
    assert [(c.row, c.image, c.rank) for c in crops[0]] == [(1, 0, 1), (3, 1, 2)]
    assert crops[0][0].original_box == (67, 16, 131, 80) and crops[0][1].original_box is None  # size unknown
    assert crops[1] == []  # a concept absent from every row has no crop
