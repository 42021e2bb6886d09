"""Bad numbers, degenerate data, clear messages and set-up snags (issue 17, "clean failures")."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from concepts.cli import main
from concepts.factorize.registry import METHODS
from concepts.schema import open_run
from fake_artefacts import write_activations

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv, key", [
    (["factorize", "{run}", "--max-iter", "-5", "--overwrite"], "factorize.max_iter"),
    (["extract", "{images}", "--out", "{tmp}/x", "--max-images", "0"], "data.max_images"),
    (["extract", "{images}", "--out", "{tmp}/x", "--max-images", "-1"], "data.max_images"),
    (["extract", "{images}", "--out", "{tmp}/x", "--batch-size", "0"], "extract.batch_size"),
    (["atlas", "{run}", "--thumb-size", "0"], "atlas.thumb_size"),
    (["atlas", "{run}", "--top-k", "-1"], "atlas.top_k"),
    (["factorize", "{run}", "--threads", "0"], "executor.threads"),
    (["run", "--threads", "0"], "executor.threads"),
])
def test_bad_numbers_are_refused_before_any_work(run, images, tmp_path, capsys, argv, key):
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*.h5")}
    argv = [a.format(run=run, images=images, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"concepts: error: {key}: ") and "is not allowed; expected" in err[0]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.h5")} == before  # good concepts kept
    assert not (tmp_path / "x").exists()


def _degenerate(run: Path) -> None:
    rng = np.random.default_rng(0)
    write_activations(run, "constant", np.full((3, 16, 8), 0.5, np.float32))
    write_activations(run, "one_image", rng.random((1, 16, 8)).astype(np.float32))
    write_activations(run, "normal", rng.random((6, 16, 8)).astype(np.float32))


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("r", [1, 20])
def test_degenerate_classes_fit_or_are_skipped_and_listed(method, r, tmp_path, capsys):
    """A constant class, a class of one image, r = 1 and r above the rank: fitted or skipped with a reason; the
    other classes go on."""
    _degenerate(tmp_path)
    from concepts.factorize import factorize_run

    report = factorize_run(tmp_path, method=method, n_concepts=r, progress=False)
    assert set(report.written) | set(report.skipped) == {"constant", "one_image", "normal"}
    err = capsys.readouterr().err
    for class_id, why in report.skipped.items():
        assert f"class {class_id!r} skipped: {why}" in err and "\n" not in why
        assert "cannot find" in why or "at least" in why or "all equal" in why or "non-finite" in why, why
    for class_id in report.written:
        record = open_run(tmp_path).concepts(class_id)
        assert np.isfinite(record.components).all() and np.isfinite(record.coefficients).all()
    if r == 1:
        assert {"normal", "one_image"} <= set(report.written)
    elif getattr(METHODS[method], "overcomplete", False):  # SAEs, mini-batch NMF: 20 atoms over 8 channels is valid
        assert {"normal", "one_image"} <= set(report.written)
    else:  # 20 concepts: more than the 16 rows of the one-image class, more than the 8 channels of any class
        assert "one_image" in report.skipped
        if method in ("nmf", "semi_nmf", "pca", "ica"):
            assert report.written == []


def test_unreadable_images_say_why(tmp_path, capsys):
    from concepts.datasets import discover
    from concepts.datasets.images import UnreadableImage, load_image

    folder = tmp_path / "imgs" / "cls"
    folder.mkdir(parents=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image at all")
    (folder / "link.jpg").symlink_to(tmp_path / "nowhere.jpg")
    expected = {"empty.jpg": "empty file", "text.jpg": "not an image", "link.jpg": "dangling symbolic link"}
    for name, why in expected.items():
        with pytest.raises(UnreadableImage, match=why):
            load_image(folder / name)
    (listed,) = discover(tmp_path / "imgs")
    assert sorted(p.name for p in listed.files) == sorted(expected)  # the dangling link is listed, not ignored
    assert main(["extract", str(tmp_path / "imgs"), "--out", str(tmp_path / "run"), "--workers", "0", "-q"]) == 0
    err = capsys.readouterr().err
    assert "BytesIO" not in err
    for name, why in expected.items():
        assert f"{name}: {why}" in err
    assert "class 'cls' skipped: no readable image" in err


def test_quiet_silences_every_progress_bar(run, capsys):
    for argv in (["factorize", str(run), "--overwrite", "-q"], ["importance", str(run), "--method", "gradient", "-q"],
                 ["atlas", str(run), "-q", "--no-sheets"], ["export", str(run), "-q"]):
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "it/s" not in err and "%|" not in err and "class/s" not in err, err


def test_help_and_version_are_fast():
    for argv in (["--help"], ["--version"], ["run", "--help"]):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "concepts", *argv], capture_output=True, text=True)
        assert done.returncode == 0 and time.perf_counter() - start < 3.0, argv


def test_readme_says_how_to_install_the_cpu_build_of_torch():
    readme = (ROOT / "README.md").read_text()
    assert "torch torchvision --index-url https://download.pytorch.org/whl/cpu" in readme
