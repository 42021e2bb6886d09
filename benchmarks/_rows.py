"""Real activation rows for the dataset-dictionary benchmarks (SAE, mini-batch NMF).

EfficientNet-Lite0 (the bundled ImageNet weights), last feature map, every 7 x 7 position of each photo (49 rows
of 1280 channels per image), extracted once with ``concepts.extract.extract_run(mode="patches")`` from
``../shared/data/imagenette/extra`` (ten classes) into a git-ignored cache folder and reused afterwards.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# the shared data folder beside the project (or beside the folder of worktrees)
DATA = next((base / "shared" / "data" / "imagenette" for base in (ROOT.parent, ROOT.parent.parent)
             if (base / "shared" / "data" / "imagenette").is_dir()), ROOT.parent / "shared" / "data" / "imagenette")
DEFAULT_CACHE = ROOT / "bench-out" / "sae-rows"


def activation_files(n_rows: int, cache: Path = DEFAULT_CACHE) -> list[Path]:
    """The class files of at least ``n_rows`` patch rows (extracting the missing ones)."""
    from concepts.extract import extract_run

    extra = DATA / "extra"
    if not extra.is_dir():
        sys.exit(f"{extra} is absent: these benchmarks need the reference photos")
    classes = sorted(p.name for p in extra.iterdir() if p.is_dir())
    per_class = max(250, math.ceil(n_rows / 49 / len(classes)))  # 250 a class: 122 500 rows
    paths = extract_run(extra, cache, mode="patches", classes=classes, max_images=per_class, progress=False)
    from concepts.extract import ActivationCache

    total = 0
    for p in paths:
        with ActivationCache(p) as c:
            total += c.n_rows
    if total < n_rows:
        sys.exit(f"only {total} rows in {cache} (asked for {n_rows}); remove the folder to re-extract")
    return paths


def load_rows(n_rows: int, cache: Path = DEFAULT_CACHE, seed: int = 0) -> np.ndarray:
    """``n_rows`` rows (float32), a uniform sample over the classes, read through a RowStream."""
    from concepts.factorize.stream import RowStream

    stream = RowStream([str(p) for p in activation_files(n_rows, cache)], seed=seed)
    return stream.sample(n_rows, seed=seed)
