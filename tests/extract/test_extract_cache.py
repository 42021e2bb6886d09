"""Stage 1 on real photos and on broken inputs: content, provenance, resume, mismatch, interruption."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from concepts.schema.hdf5 import read_attrs
from concepts.datasets import load_image
from concepts.errors import ConfigMismatchError
from concepts.extract import ActivationCache, extract_run
from concepts.models import load_split

TENCH = "n01440764"


@pytest.fixture(scope="module")
def split_info():
    return load_split()


@pytest.fixture(scope="module")
def crops_run(val50, split_info, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops")
    split, info = split_info
    extract_run(val50, out, classes=[TENCH], max_images=3, workers=0, progress=False, split=split, info=info)
    return out


def test_crop_rows_are_pooled_activations_of_each_crop(crops_run, split_info, val50):
    split, _ = split_info
    prep = split.preprocessing
    with ActivationCache(crops_run / "activations" / f"{TENCH}.h5") as cache:
        assert cache.n_rows == 3 * 16 and cache.n_channels == 1280 and cache.mode == "crops"
        rows = cache.rows()
        files = sorted((val50 / TENCH).iterdir())[:3]
        assert [os.path.basename(p) for p in cache.images["path"]] == [f.name for f in files]
        # an independent computation for a few rows: slice the box, resize, run g, average positions
        for r in [0, 5, 17, 47]:
            img = cache.row_image[r]
            x0, y0, x1, y1 = cache.row_box[r]
            view = prep.to_tensor(load_image(files[img])[0])
            crop = F.interpolate(prep.normalize(view)[None, :, y0:y1, x0:x1], size=(224, 224), mode="bilinear",
                                 align_corners=False)
            with torch.no_grad():
                want = split.g(crop).mean(dim=(1, 2))[0].numpy()
            np.testing.assert_allclose(rows[r], want, rtol=2e-3, atol=2e-3)
        # whole-image maps and the class logit
        x = torch.stack([prep.normalize(prep.to_tensor(load_image(f)[0])) for f in files])
        with torch.no_grad():
            logits = split.model(x)
            maps = split.g(x).reshape(3, 49, 1280).numpy()
        np.testing.assert_allclose(cache.maps(), maps, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(cache.images["logit"], logits[:, 0].numpy(), rtol=1e-4, atol=1e-4)
        assert cache.class_index == 0 and cache.class_name == "tench"
        assert list(cache.images["predicted"]) == logits.argmax(1).tolist()


def test_provenance_attributes(crops_run):
    with h5py.File(crops_run / "activations" / f"{TENCH}.h5", "r") as handle:
        attrs = read_attrs(handle)
        assert handle["activations"].dtype == np.float16 and handle["activations"].compression is None
        assert handle["activations"].chunks is not None
    for key in ["model", "weights", "weights_sha256", "layer", "preprocessing", "mode", "config_hash",
                "package_version", "created", "class_index_source"]:
        assert attrs.get(key) not in (None, ""), key
    assert attrs["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and attrs["patch_size"] == 64 and attrs["stride"] == 51


def test_reader_streams_and_samples_the_same_rows(crops_run):
    with ActivationCache(crops_run / "activations" / f"{TENCH}.h5") as cache:
        rows = cache.rows()
        np.testing.assert_array_equal(np.concatenate(list(cache.iter_rows(chunk_rows=7))), rows)
        sample = cache.sample_rows(10, seed=1)
        assert sample.shape == (10, 1280)
        assert all(any(np.array_equal(s, r) for r in rows) for s in sample)


def test_patches_mode_rows_are_positions(val50, split_info, tmp_path):
    split, info = split_info
    extract_run(val50, tmp_path, classes=[TENCH], max_images=2, mode="patches", workers=0, progress=False,
                split=split, info=info, compression="lzf")
    with h5py.File(tmp_path / "activations" / f"{TENCH}.h5", "r") as handle:
        assert handle["maps"].compression == "lzf"
    with ActivationCache(tmp_path / "activations" / f"{TENCH}.h5") as cache:
        assert cache.n_rows == 2 * 49
        np.testing.assert_array_equal(cache.rows(), cache.maps().reshape(-1, 1280))
        np.testing.assert_array_equal(np.concatenate(list(cache.iter_rows(chunk_rows=30))), cache.rows())
        assert tuple(cache.row_box[8]) == (32, 32, 64, 64)  # position (1, 1) of the 7x7 grid, 32 px cells


@pytest.mark.parametrize("mode", ["patches", "crops"])
def test_bounded_cache_keeps_maps_of_some_images_and_pooled_rows_of_all(val50, split_info, tmp_path, mode):
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run
    from concepts.schema import RunFolder

    split, info = split_info
    kwargs = dict(classes=[TENCH], max_images=5, mode=mode, workers=0, progress=False, split=split, info=info)
    extract_run(val50, tmp_path / "all", **kwargs)
    extract_run(val50, tmp_path / "some", map_images=2, **kwargs)
    path = lambda run: tmp_path / run / "activations" / f"{TENCH}.h5"  # noqa: E731
    with ActivationCache(path("all")) as full, ActivationCache(path("some")) as some:
        assert list(some.mapped) == [0, 4] and list(some.kept) == [0, 1, 2, 3, 4]  # evenly spaced, ends kept
        assert some.attrs["map_images"] == 2 and full.attrs["map_images"] is None
        per_image = full.n_rows // 5
        assert some.n_rows == 2 * per_image and set(some.row_image.tolist()) == {0, 4}
        np.testing.assert_array_equal(some.maps(), full.maps([0, 4]))
        np.testing.assert_array_equal(some.rows(), full.rows()[np.isin(full.row_image, [0, 4])])
        np.testing.assert_allclose(some.pooled(), full.maps().mean(axis=1), rtol=2e-3, atol=2e-3)  # float16
        np.testing.assert_array_equal(some.images["logit"], full.images["logit"])
    saved = path("all").stat().st_size - path("some").stat().st_size
    assert saved >= 0.9 * 3 * (1 + (mode == "crops") * 16 / 49) * 49 * 1280 * 2  # 3 maps (and crop rows) fewer
    factorize_run(tmp_path / "some", n_concepts=3, progress=False)
    importance_run(tmp_path / "some", models=_cache_for(split, info, path("some")), progress=False)
    folder = RunFolder(tmp_path / "some")
    concepts = folder.concepts(TENCH)
    assert concepts.image_coefficients.shape == (5, 3) and np.isfinite(concepts.image_coefficients).all()
    record = folder.importance(TENCH)
    assert list(np.flatnonzero(record.kept)) == [0, 4]
    assert np.isnan(record.methods["sobol"].per_image[1:4]).all()


def _cache_for(split, info, activations):
    from concepts.models import ModelCache

    models = ModelCache("cpu")
    with ActivationCache(activations) as cache:
        models.adopt(split, dict(cache.attrs))
    return models


def _broken_folder(root, val50):
    good = root / "mixed"
    good.mkdir(parents=True)
    src = sorted((val50 / TENCH).iterdir())
    shutil.copy(src[0], good / "a_good.jpg")
    data = src[1].read_bytes()
    (good / "b_truncated.jpg").write_bytes(data[: len(data) // 3])
    (good / "c_notes.txt").write_text("not an image")
    Image.new("L", (3, 3), 128).save(good / "d_tiny_grey.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 500, 3), dtype=np.uint8)).save(good / "e_wide.png")
    Image.new("CMYK", (64, 80), (0, 255, 0, 0)).save(good / "f_cmyk.jpg")
    Image.new("RGBA", (70, 60), (0, 0, 255, 100)).save(good / "g_rgba.png")
    (root / "empty").mkdir()
    return root


def test_bad_inputs_are_skipped_listed_and_never_fatal(val50, split_info, tmp_path, capsys):
    split, info = split_info
    images = _broken_folder(tmp_path / "images", val50)
    written = extract_run(images, tmp_path / "run", workers=0, progress=False, split=split, info=info)
    assert [p.name for p in written] == ["mixed.h5"]  # the empty class is reported and skipped
    err = capsys.readouterr().err
    assert "empty" in err and "b_truncated.jpg" in err and "c_notes.txt" in err
    with ActivationCache(written[0]) as cache:
        skipped = dict(zip([os.path.basename(p) for p in cache.images["path"]], cache.images["skipped"]))
        assert skipped == {"a_good.jpg": False, "b_truncated.jpg": True, "c_notes.txt": True, "d_tiny_grey.png": False,
                           "e_wide.png": False, "f_cmyk.jpg": False, "g_rgba.png": False}
        assert cache.n_rows == 5 * 16 and set(cache.row_image) == {0, 3, 4, 5, 6}
        assert cache.attrs["class_index_source"] == "predicted"
        assert np.isnan(cache.images["logit"][1]) and cache.images["error"][2]
        assert np.all(cache.maps([1]) == 0)  # a skipped image's map row stays zero


def test_resume_and_config_mismatch(val50, split_info, tmp_path):
    split, info = split_info
    kwargs = dict(classes=[TENCH], max_images=2, workers=0, progress=False, split=split, info=info)
    path = extract_run(val50, tmp_path, **kwargs)[0]
    stamp = path.stat().st_mtime_ns
    extract_run(val50, tmp_path, **kwargs)
    assert path.stat().st_mtime_ns == stamp  # finished class skipped
    with pytest.raises(ConfigMismatchError, match="--overwrite"):
        extract_run(val50, tmp_path, patch_size=96, **kwargs)
    extract_run(val50, tmp_path, patch_size=96, overwrite=True, **kwargs)
    with ActivationCache(path) as cache:
        assert cache.attrs["patch_size"] == 96 and cache.n_rows == 2 * 4


def _content(path):
    out = {}
    with h5py.File(path, "r") as handle:
        attrs = read_attrs(handle)
        attrs.pop("created")
        attrs.pop("creation_id")  # a fresh id per written file: what lineage records
        out["attrs"] = attrs

        def visit(name, node):
            if isinstance(node, h5py.Dataset):
                out[name] = node[()]
        handle.visititems(visit)
    return out


def test_killed_run_resumes_to_identical_files(val50, tmp_path):
    """SIGKILL in the middle, rerun: the files equal an uninterrupted run's."""
    classes = "n01440764,n02102040,n02979186"
    cmd = [sys.executable, "-m", "concepts", "extract", str(val50), "--classes", classes, "--max-images", "4",
           "--workers", "0", "--quiet", "--threads", "1"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    subprocess.run(cmd + ["--out", str(tmp_path / "clean")], check=True, env=env, capture_output=True)

    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    folder = tmp_path / "killed" / "activations"
    deadline = time.time() + 300
    while time.time() < deadline and not (folder / "n01440764.h5").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in folder.glob("*.h5"))
    assert "n01440764.h5" in finished and len(finished) < 3, finished
    subprocess.run(cmd + ["--out", str(tmp_path / "killed")], check=True, env=env, capture_output=True)
    assert not list(folder.glob("*.tmp"))
    for name in ["n01440764.h5", "n02102040.h5", "n02979186.h5"]:
        a, b = _content(tmp_path / "clean" / "activations" / name), _content(folder / name)
        assert a.keys() == b.keys()
        for key in a:
            if key == "attrs":
                assert a[key] == b[key]
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_tokens_model_stores_prefix(val50, tmp_path, capsys):
    from concepts.settings import RunConfig

    split, info = load_split("vit_tiny_patch16_224", pretrained=False)
    extract_run(val50, tmp_path, classes=[TENCH], max_images=2, mode="patches", workers=0, progress=False,
                split=split, info=info)
    with ActivationCache(tmp_path / "activations" / f"{TENCH}.h5") as cache:
        assert cache.layout == "tokens" and cache.n_prefix == 1 and cache.grid == (14, 14)
        assert cache.prefix().shape == (2, 1, 192) and cache.n_rows == 2 * 196
        assert cache.attrs["weights"] == "random"
    # signed tokens and the default concept method (NMF): said on the first batch, not after the whole extraction
    assert capsys.readouterr().err.count("the activations at this cut are signed") == 1
    semi = RunConfig().replace(**{"factorize.method": "semi_nmf"})
    extract_run(val50, tmp_path, config=semi, classes=[TENCH], max_images=2, mode="patches", workers=0,
                progress=False, split=split, info=info, overwrite=True)
    assert "signed" not in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["extract", "/no/such/folder", "--out", "X"], "not found"),
    (["extract", "VAL50", "--out", "X", "--model", "nonexistent_net"], "unknown model"),
    (["extract", "VAL50", "--out", "X", "--layer", "blocks.99"], "unknown layer"),
    (["extract", "VAL50", "--out", "X", "--classes", "n00000000"], "unknown class"),
])
def test_cli_errors_are_one_line_exit_2(argv, message, val50, tmp_path):
    argv = [str(val50) if a == "VAL50" else (str(tmp_path / "run") if a == "X" else a) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "concepts", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_cli_extract_then_info(val50, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "concepts", "extract", str(val50), "--out", str(run), "--classes",
                           TENCH, "--max-images", "2", "--quiet", "--workers", "0"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = subprocess.run([sys.executable, "-m", "concepts", "info", str(run)], capture_output=True, text=True)
    assert info.returncode == 0
    assert "tench" in info.stdout and "rows 32 x 1280" in info.stdout and "extract 1/1" in info.stdout


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_bf16_instructions_warns(native, val50, split_info, tmp_path, capsys, monkeypatch):
    import concepts.extract.stage as stage

    monkeypatch.setattr(stage, "cpu_has_native_bf16", lambda: native)
    split, info = split_info
    extract_run(val50, tmp_path, classes=[TENCH], max_images=1, mode="patches", precision="bf16", workers=0,
                progress=False, split=split, info=info)
    warned = "bf16 is emulated" in capsys.readouterr().err
    assert warned is (not native)
