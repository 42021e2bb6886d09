"""Never report success on stale or missing results (issue 17, "silent wrong results")."""
from __future__ import annotations

import shutil

import pytest
import yaml

from concepts.cli import main
from concepts.schema import open_run, stage_path

from conftest import CLASSES


def _config(tmp_path, images, run, **factorize):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "out": str(run), "data": {"images": str(images)}, "extract": {"mode": "patches", "workers": 0},
        "factorize": factorize, "importance": {"methods": ["gradient"]}, "atlas": {"enabled": False},
        "export": {"enabled": False}}))
    return path


def test_run_checks_files_it_did_not_make(run, images, tmp_path, capsys):
    """Files made by the stage commands (NMF r = 3), then `concepts run` asking PCA r = 2: refused, named."""
    assert not (run / "config.yaml").exists()
    code = main(["run", str(_config(tmp_path, images, run, method="pca", n_concepts=2)), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "other settings" in err and "method nmf -> pca" in err and "n_concepts 3 -> 2" in err
    assert not (run / "config.yaml").exists()  # no config describing files that are not on disk
    # the same settings as the files: accepted, nothing recomputed, and the config then describes the files
    before = stage_path(run, "factorize", CLASSES[0]).stat().st_mtime_ns
    assert main(["run", str(_config(tmp_path, images, run, method="nmf", n_concepts=3)), "-q"]) == 0
    assert stage_path(run, "factorize", CLASSES[0]).stat().st_mtime_ns == before
    assert yaml.safe_load((run / "config.yaml").read_text())["factorize"]["n_concepts"] == 3


def test_downstream_stages_refuse_old_outputs_of_new_inputs(run, capsys):
    """factorize --overwrite with k-means: the importance files are now stale; atlas and export refuse."""
    assert main(["factorize", str(run), "--method", "kmeans", "--concepts", "3", "--overwrite", "-q"]) == 0
    capsys.readouterr()
    for command in (["atlas", str(run), "-q", "--no-sheets"], ["export", str(run), "-q"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "importance file is stale" in err[0] and "concepts importance" in err[0]
        assert CLASSES[0] in err[0]
    assert not (run / "exports").exists()
    # the importance stage recomputes the stale files without --overwrite; then both work
    assert main(["importance", str(run), "--method", "gradient", "-q"]) == 0
    assert main(["export", str(run), "-q"]) == 0
    from concepts.export import load_export

    assert set(load_export(run).importances["factorization"]) == {"kmeans"}


def test_a_damaged_artefact_is_an_error_never_a_missing_class(run, capsys):
    path = stage_path(run, "extract", CLASSES[1])
    path.write_bytes(path.read_bytes()[:5000])  # truncated
    for command in (["factorize", str(run), "-q"], ["factorize", str(run), "--overwrite", "-q"],
                    ["importance", str(run), "--method", "gradient", "-q"], ["atlas", str(run), "-q"], ["export", str(run), "-q"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and path.name in err[0] and "damaged" in err[0] and "Traceback" not in err[0]
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "damaged" in out and "extract: damaged 1" in out
    statuses = open_run(run).status()
    assert set(statuses) == set(CLASSES)  # listed, not left out
    assert statuses[CLASSES[1]].stages["extract"] == "damaged"
    assert statuses[CLASSES[1]].stages["factorize"] == "stale"


def test_images_added_or_removed_make_activations_stale(own_images, tmp_path, capsys):
    """Extraction recorded its image list: a changed class folder is recomputed, never 'nothing to do'."""
    run = tmp_path / "fresh"
    args = ["extract", str(own_images), "--out", str(run), "--mode", "patches", "--workers", "0", "-q"]
    assert main(args) == 0 and main(["factorize", str(run), "--concepts", "3", "-q"]) == 0
    before = open_run(run).activations(CLASSES[0]).n_images
    extra = next(p for p in sorted((own_images / CLASSES[1]).iterdir()))
    shutil.copy(extra, own_images / CLASSES[0] / "added.JPEG")
    capsys.readouterr()
    assert main(args) == 0
    assert "1 written (1 was stale), 1 already done" in capsys.readouterr().err
    assert open_run(run).activations(CLASSES[0]).n_images == before + 1
    statuses = open_run(run).status()  # downstream: that class's concepts are now stale, the other's are not
    assert statuses[CLASSES[0]].stages["factorize"] == "stale"
    assert statuses[CLASSES[1]].stages["factorize"] == "done"
    (own_images / CLASSES[0] / "added.JPEG").unlink()
    assert main(args) == 0
    assert "1 written (1 was stale)" in capsys.readouterr().err
