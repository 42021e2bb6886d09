"""Recovery and stability metrics against hand-computed values on tiny examples."""
import numpy as np
import pytest

from concepts.errors import ConceptsError
from concepts.evaluate import recovery as rec
from concepts.evaluate.stability import mean_pairwise_match, stability, subsample_rows


def test_coverage_hand():
    labels = np.array([[0, 0, 1, 1],
                       [0, 2, 1, 1],
                       [2, 2, 0, 0],
                       [2, 2, 0, 1]])
    cov = rec.coverage(labels, (2, 2), 3)
    assert cov.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(cov[0, 0, 0], [0.75, 0, 0.25])
    np.testing.assert_allclose(cov[0, 0, 1], [0, 1, 0])
    np.testing.assert_allclose(cov[0, 1, 0], [0, 0, 1])
    np.testing.assert_allclose(cov[0, 1, 1], [0.75, 0.25, 0])
    with pytest.raises(ConceptsError):
        rec.coverage(labels, (8, 8), 3)


def test_dominant_concept_uses_atom_norms_and_threshold():
    U = np.array([[1.0, 0.6], [0.2, 0.1], [0.0, 0.0]])
    W = np.array([[1.0, 0.0], [0.0, 2.0]])  # norms 1 and 2: strengths [1, 1.2], [0.2, 0.2], [0, 0]
    np.testing.assert_array_equal(rec.dominant_concept(U, W), [1, 0, 0])
    # threshold 0.5 of the largest strength (1.2): rows 2 and 3 go to "no concept" (index 2)
    np.testing.assert_array_equal(rec.dominant_concept(U, W, threshold=0.5), [1, 2, 2])


def test_contingency_iou_and_scores_hand():
    # 4 positions, 2 concepts, labels: background 0 and planted 1, 2
    assign = np.array([0, 0, 1, 2])  # the last position belongs to no concept
    cover = np.array([[0, 1, 0], [0.5, 0.5, 0], [0, 0, 1], [0, 0, 1]])
    C = rec.contingency(assign, cover, 2)
    np.testing.assert_allclose(C, [[0.5, 1.5, 0], [0, 0, 1]])
    area = cover.sum(axis=0)  # [0.5, 1.5, 2]
    iou = rec.iou_matrix(C, area)
    # concept 0 vs label 1: 1.5 / (2 + 1.5 - 1.5) = 0.75; concept 1 vs label 2: 1 / (1 + 2 - 1) = 0.5
    np.testing.assert_allclose(iou, [[0.25, 0.75, 0], [0, 0, 0.5]])
    out = rec.recovery_scores(C, label_area=area, top_concept=1, key_label=2)
    assert out["per_label_iou"] == pytest.approx({1: 0.75, 2: 0.5})
    assert out["recovery_iou"] == pytest.approx(0.625)
    assert out["key_iou"] == pytest.approx(0.5)
    assert out["purity"] == pytest.approx((1.5 + 1) / 3)
    assert out["top_label"] == 2 and out["top_is_key"] is True
    assert rec.recovery_scores(C, label_area=area, top_concept=0, key_label=2)["top_is_key"] is False


def test_perfect_recovery_scores_one():
    rng = np.random.default_rng(0)
    labels = np.zeros((3, 8, 8), dtype=np.uint8)
    labels[:, :4, :4] = 1
    labels[:, 4:, 4:] = 2
    cov = rec.coverage(labels, (4, 4), 3)  # every cell is pure
    U = cov[..., 1:] * rng.uniform(1, 2, size=(3, 4, 4, 1))  # concept j = label j + 1
    out = rec.concept_recovery(U, None, labels, 3, importance=np.array([0.1, 0.9]), key_label=2)
    assert out["recovery_iou"] == pytest.approx(1.0)
    assert out["purity"] == pytest.approx(1.0)
    assert out["top_is_key"] is True


def test_mean_pairwise_match_hand():
    eye = np.eye(3)
    assert mean_pairwise_match([eye, eye[[2, 0, 1]]]) == pytest.approx(1.0)
    # rotate one atom by 60 degrees in its plane: cos 0.5 for that pair, 1 for the others
    rot = eye.copy()
    rot[0] = [0.5, 0.0, np.sqrt(3) / 2]
    rot[2] = [0.0, 1.0, 0.0]
    rot[1] = [0.0, 0.0, 1.0]
    # best matching: 0<->0 (0.5), 1<->2 (1), 2<->1 (1)
    assert mean_pairwise_match([eye, rot]) == pytest.approx(2.5 / 3)
    assert np.isnan(mean_pairwise_match([eye]))


def test_stability_of_deterministic_and_random_fits():
    rows = np.random.default_rng(0).random((40, 6))
    row_image = np.repeat(np.arange(10), 4)
    fixed = stability(lambda X, s: np.eye(3, 6), rows, row_image=row_image)
    assert fixed["stability"] == pytest.approx(1.0)
    assert len(fixed["banks"]["seed"]) == 3 and len(fixed["banks"]["subsample"]) == 3

    def random_bank(X, s):  # ignores the data, like the random-atoms baseline
        return np.random.default_rng(s).normal(size=(3, 200))

    noisy = stability(random_bank, rows, row_image=row_image)
    assert noisy["stability_seed"] < 0.35 and noisy["stability_subsample"] < 0.35


def test_subsample_keeps_whole_images():
    row_image = np.repeat(np.arange(10), 3)
    idx = subsample_rows(row_image, 0.5, np.random.default_rng(0))
    chosen = np.unique(row_image[idx])
    assert len(chosen) == 5 and len(idx) == 15


def test_top_concept_label_is_its_match_not_its_majority():
    # concept 0 covers the key object (label 2, area 2) plus a halo of 3 background cells:
    # majority label background, but the Hungarian match (IoU 2/5 with label 2) names the key
    C = np.array([[3.0, 0.0, 2.0], [5.0, 1.0, 0.0]])
    out = rec.recovery_scores(C, top_concept=0, key_label=2)
    assert out["top_label"] == 2 and out["top_is_key"] is True
    assert out["key_iou"] == pytest.approx(2 / 5)


def test_summary_and_markdown_table():
    import pandas as pd

    from concepts.evaluate.report import markdown_table, summarise

    frame = pd.DataFrame({
        "dataset": ["d"] * 4, "class_name": ["a", "b", "a", "b"], "method": ["nmf", "nmf", "pca", "pca"],
        "rel_error": [0.2, 0.4, 0.1, 0.1], "stability": [1.0, 0.5, 0.9, 0.9],
    })
    summary = summarise(frame)
    assert list(summary["method"]) == ["nmf", "pca"]
    assert summary["rel_error"].tolist() == pytest.approx([0.3, 0.1])
    assert summary["rel_error_std"].tolist() == pytest.approx([0.1, 0.0])
    assert summary["stability"].tolist() == pytest.approx([0.75, 0.9])
    table = markdown_table(summary, ["method", "rel_error", "stability"])
    lines = table.splitlines()
    assert lines[2] == "| nmf | 0.300 | 0.750 |"
    assert lines[3] == "| pca | **0.100** | **0.900** |"  # lower error and higher stability are best
