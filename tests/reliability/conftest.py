"""A small real run made by the stage commands (2 Imagenette classes x 3 photos, NMF r = 3), copied per test."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CLASSES = ["n01440764", "n03000684"]


@pytest.fixture(scope="session")
def images(val50, tmp_path_factory) -> Path:
    """A class-folder copy of 3 photos per class (tests add and remove photos)."""
    root = tmp_path_factory.mktemp("images")
    for wnid in CLASSES:
        (root / wnid).mkdir()
        for photo in sorted((val50 / wnid).glob("*.JPEG"))[:3]:
            shutil.copy(photo, root / wnid / photo.name)
    return root


@pytest.fixture(scope="session")
def stage_run(images, tmp_path_factory) -> Path:
    from concepts.cli import main

    run = tmp_path_factory.mktemp("stage_run") / "run"
    assert main(["extract", str(images), "--out", str(run), "--mode", "patches", "--workers", "0", "-q"]) == 0
    assert main(["factorize", str(run), "--concepts", "3", "-q"]) == 0
    assert main(["importance", str(run), "--method", "gradient", "-q"]) == 0
    return run


@pytest.fixture()
def run(stage_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(stage_run, copy)
    return copy


@pytest.fixture()
def own_images(images, tmp_path) -> Path:
    copy = tmp_path / "images"
    shutil.copytree(images, copy)
    return copy
