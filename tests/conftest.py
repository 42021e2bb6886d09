"""Shared fixtures: the reference photos in ../shared/data and a small real run built once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The shared data folder beside the project: /work/shared for /work/main, also found from a worktree /work/wt/NAME.
SHARED_DATA = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
                   ROOT.parent / "shared" / "data")
VAL50 = SHARED_DATA / "imagenette" / "val50"
RUN_CLASSES = ["n01440764", "n03000684"]  # tench, chain saw


def require_val50() -> Path:
    if not VAL50.is_dir():
        pytest.skip(f"reference photos not found at {VAL50} (the shared data folder beside the project)")
    return VAL50


@pytest.fixture(scope="session")
def val50() -> Path:
    return require_val50()


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> Path:
    """A small real run: 2 Imagenette classes x 8 images, default model, crops mode, every stage that exists."""
    images = require_val50()
    run = tmp_path_factory.mktemp("real_run")
    from concepts.extract import extract_run

    extract_run(images, run, classes=RUN_CLASSES, max_images=8, workers=0, progress=False)
    try:
        from concepts.factorize import factorize_run
    except ImportError:
        return run
    factorize_run(run, method="nmf", n_concepts=6, seed=0, progress=False)
    try:
        from concepts.importance import importance_run
    except ImportError:
        return run
    importance_run(run, progress=False)
    return run


@pytest.fixture(scope="session")
def real_run_dataset(real_run, tmp_path_factory) -> Path:
    """The same activations as ``real_run``, factorised at dataset scope: one NMF dictionary of 12 atoms shared by
    both classes, each class viewing its 6 most used atoms."""
    import shutil

    from concepts.factorize import factorize_run
    from concepts.importance import importance_run

    run = tmp_path_factory.mktemp("real_run_dataset") / "run"
    shutil.copytree(real_run / "activations", run / "activations")
    factorize_run(run, scope="dataset", method="nmf", n_concepts=12, concepts_per_class=6, seed=0, progress=False)
    importance_run(run, progress=False)
    return run


@pytest.fixture(params=["class", "dataset"])
def real_run_any(request) -> Path:
    """``real_run`` at both factorisation scopes (per-class dictionaries, or one shared dictionary)."""
    return request.getfixturevalue("real_run" if request.param == "class" else "real_run_dataset")


@pytest.fixture(autouse=True, scope="session")
def _threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
