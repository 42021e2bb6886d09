"""`concepts demo`: the whole pipeline offline on the photos bundled with scikit-image."""
from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from concepts.datasets.demo_photos import DEMO_PHOTOS, demo_photo, demo_views, write_demo_images


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
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(DEMO_PHOTOS)
    for wnid in DEMO_PHOTOS:
        files = sorted((folder / wnid).glob("*.jpg"))
        assert len(files) == 3 and Image.open(files[0]).mode == "RGB"
    licences = (folder / "LICENCES.md").read_text()
    assert all(p.licence in licences for p in DEMO_PHOTOS.values())


def test_the_bundled_model_recognises_each_demo_photo():
    """Each demo class is the bundled model's top-1 on its photo (so the demo explains the class it predicts)."""
    import torch

    from concepts.datasets.labels import resolve_label
    from concepts.models import load_split

    split, _ = load_split(device="cpu")
    prep = split.preprocessing
    for wnid, photo in DEMO_PHOTOS.items():
        x = prep.normalize(prep.to_tensor(Image.fromarray(demo_photo(photo)).convert("RGB")))[None]
        with torch.no_grad():
            p = split.h(split.g(x))[0].softmax(-1)
        index = resolve_label(wnid, 1000).index
        assert int(p.argmax()) == index and float(p[index]) == pytest.approx(photo.top1, abs=0.02), wnid


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
    for photo in DEMO_PHOTOS.values():
        assert photo.class_name in index
    assert "views of ONE photo" in proc.stderr  # the demo says what it cannot show
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
