"""Stage 2 (`factorize_run`, `load_concepts`, `concepts factorize`): artefact contents, streaming of large
classes, resume, config mismatch, bad caches, and real activations of two Imagenette classes."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from concepts.schema import config_hash, stage_path
from concepts.schema.hdf5 import read_attrs
from concepts.errors import ConceptsError, ConfigMismatchError
from concepts.factorize import METHODS, factorize_class, factorize_run, load_concepts, make_estimator, match_atoms
from concepts.factorize.metrics import dead_concepts, hoyer, relative_error, sparsity_l0
from fake_artefacts import write_patches_activations


def write_activations(run, class_id, maps, *, skipped=None, config=None):
    return write_patches_activations(run, class_id, np.asarray(maps, np.float32), skipped=skipped, config=config)


def planted_maps(n_images=12, N=16, D=24, r=4, seed=0):
    rng = np.random.default_rng(seed)
    W0 = rng.random((r, D)) ** 4
    for k in range(r):
        W0[k, 2 * k: 2 * k + 2] = 1.0
    U0 = rng.random((n_images * N, r)) ** 3
    A = U0 @ W0 + 0.01 * rng.random((n_images * N, D))
    return A.reshape(n_images, N, D).astype(np.float32), W0


def test_artefact_holds_bank_coefficients_and_diagnostics(tmp_path):
    maps, W0 = planted_maps()
    maps[3] = 99.0  # a skipped image: its rows must not be used
    write_activations(tmp_path, "cls", maps, skipped=[i == 3 for i in range(12)])
    (path,) = factorize_run(tmp_path, method="nmf", n_concepts=4, seed=0, progress=False)
    assert path == stage_path(tmp_path, "factorize", "cls")
    A = np.delete(maps, 3, axis=0).reshape(-1, maps.shape[-1])
    with h5py.File(path, "r") as f:
        attrs = read_attrs(f)
        W = f["components"][()]
        U = f["coefficients"][()]
    assert W.shape == (4, 24) and W.dtype == np.float32
    assert U.shape == (11 * 16, 4) and U.dtype == np.float32
    assert match_atoms(W, W0, signed=True)[0] >= 0.95
    # diagnostics are the metrics of the stored factors on the cached rows
    assert attrs["rel_error"] == pytest.approx(relative_error(A, U, W), rel=1e-4)
    assert attrs["sparsity_l0"] == pytest.approx(sparsity_l0(U), abs=1e-9)
    assert attrs["hoyer"] == pytest.approx(hoyer(U), rel=1e-6)
    assert attrs["dead"] == len(dead_concepts(U, W)) == 0
    for key in ("method", "params", "n_concepts", "seed", "n_iter", "converged", "seconds", "config_hash",
                "source_config_hash", "model", "layer", "grid", "mode"):
        assert key in attrs, key
    assert attrs["method"] == "nmf" and attrs["n_concepts"] == 4 and attrs["seed"] == 0
    assert attrs["params"]["solver"] == "hals" and attrs["fit_rows"] == "all"
    assert attrs["source_config_hash"] == config_hash({"mode": "patches"}) != attrs["config_hash"]
    assert attrs["stage"] == "factorize"
    # concepts ordered by decreasing total coefficient mass
    mass = U.sum(0) * np.linalg.norm(W, axis=1)
    assert (np.diff(mass) <= 1e-6 * mass.max()).all()
    # the reloaded estimator reproduces the stored coefficients
    est = load_concepts(tmp_path, "cls", coefficients=True)
    np.testing.assert_array_equal(est.components_, W)
    np.testing.assert_allclose(est.transform(A), U, atol=1e-3 * U.max())
    np.testing.assert_array_equal(est.coefficients_, U)
    assert est.attrs["rel_error"] == attrs["rel_error"]


def test_same_seed_gives_same_numbering(tmp_path):
    maps, _ = planted_maps(seed=1)
    for run in ("a", "b"):
        write_activations(tmp_path / run, "cls", maps)
        factorize_run(tmp_path / run, n_concepts=4, seed=5, method="nmf", init="random", progress=False)
    with h5py.File(stage_path(tmp_path / "a", "factorize", "cls")) as fa, \
            h5py.File(stage_path(tmp_path / "b", "factorize", "cls")) as fb:
        np.testing.assert_array_equal(fa["components"][()], fb["components"][()])
        np.testing.assert_array_equal(fa["coefficients"][()], fb["coefficients"][()])


def test_large_class_is_fitted_on_a_sample_and_streamed(tmp_path):
    maps, W0 = planted_maps(n_images=40, seed=2)
    write_activations(tmp_path, "big", maps)
    (path,) = factorize_run(tmp_path, n_concepts=4, seed=0, max_rows=200, chunk_rows=96, progress=False)
    A = maps.reshape(-1, maps.shape[-1])
    with h5py.File(path, "r") as f:
        attrs = read_attrs(f)
        W, U = f["components"][()], f["coefficients"][()]
    assert attrs["fit_rows"] == "sample" and attrs["n_fit_rows"] == 200 and attrs["n_rows"] == 640
    assert U.shape == (640, 4)
    est = load_concepts(tmp_path, "big")
    np.testing.assert_allclose(U, est.transform(A), atol=1e-3 * U.max())  # every row, not only the sample
    assert attrs["rel_error"] == pytest.approx(relative_error(A, U, W), rel=1e-4)
    assert match_atoms(W, W0, signed=True)[0] >= 0.95


def test_resume_skips_finished_and_refuses_other_settings(tmp_path):
    maps, _ = planted_maps(seed=3)
    write_activations(tmp_path, "a", maps)
    write_activations(tmp_path, "b", maps[::-1].copy())
    (pa,) = factorize_run(tmp_path, classes=["a"], n_concepts=3, progress=False)
    stamp = pa.stat().st_mtime_ns
    paths = factorize_run(tmp_path, n_concepts=3, progress=False)
    assert [p.stem for p in paths] == ["a", "b"]
    assert pa.stat().st_mtime_ns == stamp  # finished class skipped
    with pytest.raises(ConfigMismatchError, match="other settings .*n_concepts 3 -> 4"):
        factorize_run(tmp_path, n_concepts=4, progress=False)
    with pytest.raises(ConfigMismatchError):
        factorize_run(tmp_path, n_concepts=3, solver="mu", progress=False)
    factorize_run(tmp_path, n_concepts=4, overwrite=True, progress=False)
    assert read_attrs(h5py.File(pa, "r"))["n_concepts"] == 4
    assert not list((tmp_path / "concepts").glob("*.tmp"))


def test_new_activations_make_concepts_stale(tmp_path):
    """Re-extracted activations (another creation id) make the concepts stale: recomputed, no --overwrite."""
    maps, _ = planted_maps(seed=3)
    write_activations(tmp_path, "a", maps)
    factorize_run(tmp_path, n_concepts=3, progress=False)
    before = read_attrs(h5py.File(stage_path(tmp_path, "factorize", "a"), "r"))
    assert factorize_run(tmp_path, n_concepts=3, progress=False).done == ["a"]
    activations = write_activations(tmp_path, "a", maps, config={"mode": "patches", "layer": "other"})
    report = factorize_run(tmp_path, n_concepts=3, progress=False)
    assert report.stale == ["a"] and report.written == ["a"]
    after = read_attrs(h5py.File(stage_path(tmp_path, "factorize", "a"), "r"))
    source = read_attrs(h5py.File(activations, "r"))
    assert after["creation_id"] != before["creation_id"]
    assert after["inputs"]["extract"]["creation_id"] == source["creation_id"]


def test_warnings_for_few_images_and_an_unconverged_fit(tmp_path, capsys):
    maps, _ = planted_maps(n_images=3)
    write_activations(tmp_path, "few", maps)
    write_activations(tmp_path, "one", maps[:1])
    factorize_run(tmp_path, n_concepts=4, max_iter=1, seed=0, progress=False)
    err = capsys.readouterr().err
    assert "class 'few' has 3 usable images for 4 concepts" in err
    assert "class 'one' has 1 usable image for 4 concepts" in err  # '1 image', not '1 images'
    assert "class 'few': nmf stopped after 1 iteration (max_iter 1) before converging" in err
    assert "2 of 2 classes written stopped at the iteration limit" in err
    factorize_run(tmp_path, classes=["few"], n_concepts=2, seed=0, progress=False, overwrite=True)
    assert "warning" not in capsys.readouterr().err  # enough images, converged: nothing to say


def test_collected_warnings_are_one_summary_line_per_kind(tmp_path, capsys):
    """`concepts run` collects the per-class warnings of its tasks (warn=False) and prints one line per kind."""
    from concepts.factorize.stage import warning_summary

    maps, _ = planted_maps(n_images=3)
    for name in ("a", "b", "c", "d"):
        write_activations(tmp_path, name, maps)
    report = factorize_run(tmp_path, n_concepts=4, max_iter=1, seed=0, progress=False, warn=False)
    assert capsys.readouterr().err == ""  # collected, not printed
    assert set(report.warnings) == {"few_images", "unconverged"}
    assert report.warnings["few_images"] == {c: "3 usable images for 4 concepts" for c in "abcd"}
    assert sorted(report.warnings["unconverged"]) == list("abcd")
    line = warning_summary("few_images", report.warnings["few_images"])
    assert "\n" not in line and line.startswith("warning: factorize: 4 classes have fewer usable images than concepts")
    assert line.count("3 usable images for 4 concepts") == 3 and line.endswith(" ...)")  # three examples, then ...


def test_nan_in_cache_names_the_class_file_and_leaves_nothing(tmp_path):
    maps, _ = planted_maps(seed=4)
    maps[2, 5, 7] = np.nan
    act = write_activations(tmp_path, "bad", maps)
    with pytest.raises(ConceptsError) as info:
        factorize_run(tmp_path, n_concepts=3, progress=False)
    assert str(act) in str(info.value) and "NaN or inf" in str(info.value)
    with pytest.raises(ConceptsError, match="NaN or inf"):  # also when streaming
        factorize_run(tmp_path, n_concepts=3, max_rows=50, progress=False)
    assert not list((tmp_path / "concepts").glob("*"))


def test_negative_activations_and_unknown_inputs(tmp_path):
    maps, _ = planted_maps(seed=5)
    write_activations(tmp_path, "signed", maps - 0.5)
    with pytest.raises(ConceptsError) as info:
        factorize_run(tmp_path, method="nmf", n_concepts=3, progress=False)
    assert "Semi-NMF" in str(info.value) and "signed.h5" in str(info.value)
    (path,) = factorize_run(tmp_path, method="semi_nmf", n_concepts=3, progress=False)
    assert read_attrs(h5py.File(path, "r"))["method"] == "semi_nmf"
    with pytest.raises(ConceptsError, match="no activations for class"):
        factorize_run(tmp_path, classes=["nope"], method="semi_nmf", n_concepts=3, progress=False)
    with pytest.raises(ConceptsError, match="factorize.method: 'lda' is not allowed; expected nmf | semi_nmf"):
        factorize_run(tmp_path, method="lda", progress=False)
    with pytest.raises(ConceptsError, match="no activations for class"):
        factorize_class(tmp_path, "nope", method="semi_nmf", n_concepts=3)
    with pytest.raises(ConceptsError, match="at most"):
        make_estimator("pca", 30).fit(maps.reshape(-1, 24))
    with pytest.raises(ConceptsError, match="run folder not found"):
        factorize_run(tmp_path / "empty", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConceptsError, match="no activations"):
        factorize_run(tmp_path / "empty", progress=False)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_round_trips_through_the_file(tmp_path, method):
    maps, _ = planted_maps(seed=6)
    write_activations(tmp_path, "c", maps)
    (path,) = factorize_run(tmp_path, method=method, n_concepts=3, seed=1, progress=False)
    A = maps.reshape(-1, maps.shape[-1])
    est = load_concepts(tmp_path, "c", coefficients=True)
    assert type(est) is METHODS[method]
    np.testing.assert_allclose(est.transform(A), est.coefficients_, atol=2e-3 * np.abs(est.coefficients_).max())
    recon = est.inverse_transform(est.coefficients_)
    assert np.linalg.norm(A - recon) / np.linalg.norm(A) == pytest.approx(est.attrs["rel_error"], rel=1e-3)


def test_cli_factorize(tmp_path, capsys):
    from concepts.cli import main

    maps, _ = planted_maps(seed=7)
    write_activations(tmp_path, "c", maps)
    assert main(["factorize", str(tmp_path), "--concepts", "3", "--seed", "2", "--quiet",
                 "--param", "inner_tol=0.05", "--solver", "mu"]) == 0
    attrs = read_attrs(h5py.File(stage_path(tmp_path, "factorize", "c"), "r"))
    assert attrs["params"]["solver"] == "mu" and attrs["params"]["inner_tol"] == 0.05 and attrs["seed"] == 2
    assert main(["factorize", str(tmp_path), "--concepts", "4", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err
    write_activations(tmp_path / "neg", "c", maps - 1)
    assert main(["factorize", str(tmp_path / "neg"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Semi-NMF" in err


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_on_real_activations_of_two_classes(real_run, tmp_path, method):
    """Real EfficientNet-Lite0 crops of two Imagenette classes: each method fits and reports sanely."""
    run = tmp_path / "run"
    shutil.copytree(real_run / "activations", run / "activations")
    paths = factorize_run(run, method=method, n_concepts=5, seed=0, progress=False)
    assert len(paths) == 2
    for path in paths:
        est = load_concepts(run, path.stem, coefficients=True)
        attrs = est.attrs
        assert est.components_.shape == (5, 1280) and np.isfinite(est.components_).all()
        assert 0 < attrs["rel_error"] < 0.95
        assert attrs["dead"] == 0
        assert attrs["model"] == "tf_efficientnet_lite0"
        if method == "nmf":
            assert (est.components_ >= 0).all() and (est.coefficients_ >= 0).all()
