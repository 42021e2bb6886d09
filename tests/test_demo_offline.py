"""`concepts demo`: the whole pipeline offline on the photos bundled with scikit-image."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from concepts.datasets.demo_photos import DEMO_PHOTOS, demo_views, write_demo_images


def test_demo_views_are_deterministic_crops_of_the_photo():
    import skimage.data

    photo = skimage.data.coffee()
    a, b = demo_views(photo, 5, seed=3), demo_views(photo, 5, seed=3)
    assert [np.asarray(v).tolist() == np.asarray(w).tolist() for v, w in zip(a, b)] == [True] * 5
    assert np.array_equal(np.asarray(a[0]), photo)  # the first view is the photo itself
    for view in a[1:]:
        assert view.width <= photo.shape[1] and view.height <= photo.shape[0]
        assert view.width * view.height >= 0.3 * photo.shape[0] * photo.shape[1]


def test_write_demo_images_layout(tmp_path):
    folder = write_demo_images(tmp_path, n_views=3)
    assert sorted(p.name for p in folder.iterdir()) == sorted(DEMO_PHOTOS)
    for wnid in DEMO_PHOTOS:
        files = sorted((folder / wnid).glob("*.jpg"))
        assert len(files) == 3 and Image.open(files[0]).mode == "RGB"


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_offline(tmp_path):
    out = tmp_path / "demo"
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    # --no-fviz: the feature visualisations add minutes per class; tests/pipeline covers them in `concepts run`
    proc = subprocess.run([sys.executable, "-m", "concepts", "demo", "--out", str(out), "--quiet", "--no-fviz"],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(out / "atlas" / "index.html") in proc.stderr and "importances.csv" in proc.stderr
    index = (out / "atlas" / "index.html").read_text()
    for name in ["tiger cat", "espresso", "missile", "tripod"]:
        assert name in index
    with open(out / "exports" / "importances.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["class_id"] for r in rows} == set(DEMO_PHOTOS)
    for wnid in DEMO_PHOTOS:
        sobol = [float(r["importance"]) for r in rows if r["class_id"] == wnid and r["method"] == "sobol"]
        assert len(sobol) == 10 and abs(sum(sobol) - 1) < 1e-5
    again = subprocess.run([sys.executable, "-m", "concepts", "demo", "--out", str(out), "--no-fviz"],
                           capture_output=True,
                           text=True, env=env, timeout=600)
    assert again.returncode == 0 and "nothing to do" in again.stderr.lower()


def test_demo_fviz_settings_are_the_config_files():
    """`concepts demo` and `concepts run configs/demo.yaml` make the feature visualisations with the same (CPU)
    settings, and those are valid settings."""
    from pathlib import Path

    from concepts.pipeline.demo import DEMO_FVIZ
    from concepts.settings import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    assert config.fviz.enabled and {k: getattr(config.fviz, k) for k in DEMO_FVIZ} == DEMO_FVIZ
    assert not load_config().fviz.enabled  # off by default
