"""At dataset scope, each planted concept shared by the classes is one atom of the shared dictionary, used by every
class, and the key concepts are recovered at least as well as by per-class NMF.

The activations are planted from the generator's masks (a perfect feature extractor, as in
``test_evaluate_recovery.py``): every position of the 8x8 grid of a real synthetic scene gets ``coverage @ M +
noise``, one non-negative profile per concept in ``M``. They are written as the activations files of a run whose
image paths are the scenes themselves, so that ``factorize --scope dataset`` and the evaluation read them like a
run of ``concepts synth`` images.
"""
import numpy as np
import pytest

from concepts.evaluate import synthetic as syn
from concepts.evaluate.shared import MIN_SHARE, shared_labels, shared_recovery

from fake_artefacts import write_activations


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    from concepts.evaluate.recovery import coverage

    root = tmp_path_factory.mktemp("shared")
    data, run = root / "data", root / "run"
    syn.write_dataset(data, n_per_class=16, seed=5, progress=False)
    rng = np.random.default_rng(0)
    L, D = len(syn.CONCEPTS), 32
    profiles = rng.gamma(0.4, 1.0, size=(L, D))
    profiles[0] *= 0.3  # weak background
    for c, folder in enumerate(syn.class_names()):
        paths = sorted((data / "images" / folder).glob("*.png"))
        labels = np.stack([syn.load_mask(p) for p in paths])
        cov = coverage(labels, (8, 8), L).reshape(len(paths), 64, L)
        maps = cov @ profiles + 0.02 * rng.random((len(paths), 64, D))
        write_activations(run, folder, maps.astype(np.float32), class_index=c, paths=[str(p) for p in paths])
    return run


def _factorize(run, per_class):
    from concepts.factorize import factorize_run

    factorize_run(run, scope="dataset", method="nmf", n_concepts=8, concepts_per_class=per_class, seed=0,
                  overwrite=True, progress=False)
    return shared_recovery(run, head=None, baseline_concepts=per_class)


def test_each_shared_concept_is_one_atom_of_every_class_and_keys_match_per_class_nmf(planted_run):
    result = _factorize(planted_run, per_class=4)
    assert len(result["classes"]) == 5
    for label in result["shared"]:
        assert label["classes"] == 5, label  # every class contains both shared shapes somewhere
        assert label["holds"], label  # one atom, in every class's view, IoU >= MIN_SHARE x the masks' own
        assert len(label["atoms"]) == 1 and not label["missing"]
        assert label["min_share"] >= MIN_SHARE
    shared = {label["label"]: label["atom"] for label in result["shared"]}
    assert shared["green_triangle"] != shared["yellow_ring"]  # two planted concepts, two atoms
    keys = {row["label_atom"][row["key_label"]] for row in result["classes"]}
    assert len(keys) == 5 and not keys & set(shared.values())  # a key atom per class, none of them shared
    key = result["key"]
    assert key["at_least_baseline"] == 5, result["classes"]
    assert key["key_iou"] > 0.8 * key["oracle_key_iou"]


def test_a_view_too_small_for_the_shared_atoms_fails_the_check(planted_run):
    """Negative control through the stage: with one concept per class the views hold the key atom only, so the
    shared concepts are missing from every class and the check must say so."""
    result = _factorize(planted_run, per_class=1)
    assert all(not label["holds"] and label["missing"] for label in result["shared"]), result["shared"]


def test_a_shared_label_split_over_two_atoms_does_not_hold():
    row = {"concepts": list(syn.CONCEPTS), "oracle_per_label_iou": {6: 0.5, 7: 0.4}}
    rows = [dict(row, class_id=f"c{i}", per_label_iou={6: 0.45, 7: 0.35}, label_atom={6: 3, 7: 5 if i < 3 else 6})
            for i in range(5)]
    by_label = {x["label"]: x for x in shared_labels(rows)}
    assert by_label["green_triangle"]["holds"] and by_label["green_triangle"]["atom"] == 3
    assert not by_label["yellow_ring"]["holds"] and by_label["yellow_ring"]["atoms"] == [5, 6]
    weak = [dict(r, per_label_iou={6: 0.2, 7: 0.35}) for r in rows]  # one atom, but below half the ceiling
    assert not {x["label"]: x for x in shared_labels(weak)}["green_triangle"]["holds"]
