"""Dataset-scope dictionaries (`factorize --scope dataset`): planted shared concepts, class views, lineage through
the dictionary, refusals."""
from __future__ import annotations

import numpy as np
import pytest

from concepts.errors import ConceptsError
from concepts.factorize import factorize_run, load_concepts
from concepts.factorize.metrics import cosine_matrix
from concepts.schema import open_run
from fake_artefacts import write_activations

D = 24


def _planted(n_classes=3, n_images=30, positions=16, seed=0):
    """Atoms: two shared by every class, one key atom per class; rows are sparse positive mixtures."""
    rng = np.random.default_rng(seed)
    atoms = np.zeros((2 + n_classes, D), np.float32)
    for k in range(len(atoms)):  # disjoint supports: well separated, non-negative
        atoms[k, 4 * k: 4 * k + 4] = 1.0 + rng.random(4)
    classes = {}
    for c in range(n_classes):
        used = [0, 1, 2 + c]
        U = np.zeros((n_images * positions, len(atoms)), np.float32)
        for row in U:
            row[rng.choice(used, size=2, replace=False)] = rng.random(2) + 0.5
        maps = (U @ atoms + 0.01 * rng.random((len(U), D))).reshape(n_images, positions, D)
        classes[f"c{c}"] = maps.astype(np.float32)
    return atoms, classes


@pytest.fixture()
def planted_run(tmp_path):
    atoms, classes = _planted()
    for class_id, maps in classes.items():
        write_activations(tmp_path, class_id, maps)
    return tmp_path, atoms


@pytest.mark.parametrize("method, extra", [("nmf", {}), ("minibatch_nmf", {"max_epochs": 20})])
def test_shared_concepts_map_to_one_atom_used_by_every_class(planted_run, method, extra):
    """Each planted atom is matched (cosine >= 0.9: the planted atoms are orthogonal, so 0.9 leaves no doubt about
    which one an atom is) by an atom of the dictionary; for a shared one, the best match among each class's
    concepts is that good and is the same atom in every class; each class's key atom is among its concepts."""
    run, planted = planted_run
    width = 5 if "nmf" in method else 8
    report = factorize_run(run, scope="dataset", method=method, n_concepts=width, concepts_per_class=3, seed=0,
                           params=extra, progress=False)
    assert sorted(report.written) == ["c0", "c1", "c2"]
    folder = open_run(run)
    bank = folder.dictionary().components
    sims = cosine_matrix(planted, bank)
    assert (sims.max(axis=1) >= 0.9).all(), sims.max(axis=1)
    shared_atoms = {0: set(), 1: set()}
    for c in range(3):
        view = folder.concepts(f"c{c}")
        atoms = view.state["atoms"]
        np.testing.assert_array_equal(view.components, bank[atoms])
        assert view.attrs["scope"] == "dataset" and view.attrs["dictionary_size"] == width
        for p in (0, 1, 2 + c):  # the shared atoms and the class's key atom
            j = int(atoms[np.argmax(sims[p, atoms])])
            assert sims[p, j] >= 0.9, (method, c, p, sims[p, atoms])
            if p < 2:
                shared_atoms[p].add(j)
    assert all(len(found) == 1 for found in shared_atoms.values()), shared_atoms  # one atom, used by every class


def test_a_streamed_sae_dictionary_recovers_the_atoms_and_each_class_views_its_most_used(planted_run):
    """A TopK SAE trained on the stream of all classes' rows finds every planted atom (cosine >= 0.9); it also
    learns atoms for pairs that often occur together (feature absorption), so a class's concepts are whichever
    atoms carry most of its coefficient mass: checked against that mass recomputed from the class's rows."""
    run, planted = planted_run
    factorize_run(run, scope="dataset", method="topk_sae", n_concepts=8, concepts_per_class=3, seed=0,
                  params={"k": 2, "min_steps": 2000, "lr": 1e-2}, progress=False)
    folder = open_run(run)
    assert folder.dictionary().attrs["fit"] == "stream"
    assert (cosine_matrix(planted, folder.dictionary().components).max(axis=1) >= 0.9).all()
    for c in range(3):
        view = load_concepts(run, f"c{c}")
        with folder.activations(f"c{c}") as cache:
            mass = np.abs(view.base.transform(cache.rows())).sum(axis=0)
        np.testing.assert_array_equal(view.atoms, np.argsort(-mass, kind="stable")[:3])


def test_class_views_reload_and_lineage_follows_the_dictionary(planted_run):
    run, _ = planted_run
    factorize_run(run, scope="dataset", method="nmf", n_concepts=5, concepts_per_class=3, progress=False)
    folder = open_run(run)
    with folder.activations("c1") as cache:
        rows = cache.rows()
    view = load_concepts(run, "c1", coefficients=True)
    np.testing.assert_allclose(view.transform(rows), view.coefficients_, rtol=1e-5, atol=1e-5)
    assert factorize_run(run, scope="dataset", method="nmf", n_concepts=5, concepts_per_class=3,
                         progress=False).done == ["c0", "c1", "c2"]
    # a class re-extracted: the dictionary is stale, refitted, and every class view follows
    _, classes = _planted(seed=1)
    write_activations(run, "c2", classes["c2"])
    before = folder.dictionary().identity
    report = factorize_run(run, scope="dataset", method="nmf", n_concepts=5, concepts_per_class=3, progress=False)
    assert folder.dictionary().identity != before and sorted(report.stale) == ["c0", "c1", "c2"]
    assert {s.stages["factorize"] for s in folder.status().values()} == {"done"}
    # other settings: refused (naming them), unless --overwrite
    with pytest.raises(ConceptsError, match="other settings .*n_concepts 5 -> 6"):
        factorize_run(run, scope="dataset", method="nmf", n_concepts=6, concepts_per_class=3, progress=False)


def test_a_mixed_cache_and_signed_rows_are_refused(planted_run):
    run, _ = planted_run
    _, classes = _planted()
    write_activations(run, "other_layer", classes["c0"], layer="blocks.3")
    with pytest.raises(ConceptsError, match="one model, layer and sampling.*other_layer.h5 has layer 'blocks.3'"):
        factorize_run(run, scope="dataset", method="nmf", n_concepts=5, progress=False)
    write_activations(run, "other_layer", classes["c0"] - 0.5)  # signed rows, same layer
    with pytest.raises(ConceptsError, match="[Nn]egative values|non-negative"):
        factorize_run(run, scope="dataset", method="minibatch_nmf", n_concepts=5, progress=False)
    bad = classes["c1"].copy()
    bad[3, 2, 5] = np.nan
    write_activations(run, "other_layer", bad)
    with pytest.raises(ConceptsError, match="NaN or inf"):
        factorize_run(run, scope="dataset", method="topk_sae", n_concepts=8, params={"k": 2}, progress=False)
