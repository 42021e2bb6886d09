"""Stage 3 on a fabricated run (tiny model, no weights to load) and on the shared real run."""
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from concepts.errors import ConceptsError, ConfigMismatchError
from concepts.schema import stage_path
from fake_artefacts import write_concepts, write_patches_activations
from importance_tinynet import TinyNet

D, GRID, R, CLASS_INDEX = 16, 7, 4, 2


def _fabricate(run: Path, class_id: str, n_images=5, skipped=(1,), seed=0):
    """Activations with planted NMF structure and an NMF bank (a real method, coefficients by its transform)."""
    from concepts.factorize import make_estimator

    rng = np.random.default_rng(seed)
    W = np.abs(rng.normal(size=(R, D))).astype(np.float32)
    U = np.abs(rng.normal(size=(n_images, GRID * GRID, R))).astype(np.float32)
    maps = (U @ W + 0.05 * np.abs(rng.normal(size=(n_images, GRID * GRID, D)))).astype(np.float16)
    skip = np.zeros(n_images, bool)
    skip[list(skipped)] = True
    maps[skip] = 0
    write_patches_activations(run, class_id, maps, skipped=skip, class_index=CLASS_INDEX, image_size=28,
                              paths=[f"img{i}.jpg" for i in range(n_images)], class_name=class_id.upper(),
                              model="tiny", weights="random", weights_sha256="0" * 64, config_hash="fake")
    rows = maps[~skip].reshape(-1, D).astype(np.float32)
    nmf = make_estimator("nmf", R, device="cpu")
    nmf.load_state(W, {})
    write_concepts(run, class_id, W, nmf.transform(rows), params=nmf.get_params() | {"device": None},
                   config_hash=f"c-{seed}")
    return W


@pytest.fixture()
def fake_run(tmp_path):
    """Two classes and a tiny model (non-linear head) that cannot be rebuilt from a name: the stage gets it
    through a model cache that adopts it for the activations' provenance."""
    from concepts.models import ModelCache
    from concepts.models.split import ModelSplit

    banks = {cid: _fabricate(tmp_path, cid, seed=i) for i, cid in enumerate(["a", "b"])}
    split = ModelSplit(TinyNet(D, 5), input_size=28)  # non-linear head
    assert split.grid == (GRID, GRID) and split.linear_head() is None
    models = ModelCache("cpu")
    with h5py.File(stage_path(tmp_path, "extract", "a"), "r") as handle:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()}
    models.adopt(split, attrs)
    return tmp_path, split, banks, models


def test_stage_writes_contract_layout(fake_run):
    from concepts.importance import importance_run, load_importance

    run, split, banks, models = fake_run
    paths = importance_run(run, designs=8, device="cpu", progress=False, models=models)
    assert [p.name for p in paths] == ["a.h5", "b.h5"] and all(p.exists() for p in paths)
    assert not list((run / "importance").glob("*.tmp"))
    data = load_importance(run, "a")
    assert list(data.methods) == ["sobol", "gradient", "occlusion"]
    attrs = data.attrs
    assert attrs["stage"] == "importance" and attrs["class_index"] == CLASS_INDEX and attrs["designs"] == 8
    assert attrs["residual"] is True and attrs["linear_head"] is False
    assert attrs["concepts_method"] == "nmf"
    kept = data.kept
    assert kept.tolist() == [True, False, True, True, True]
    for m in data.methods.values():
        assert m.per_image.shape == (5, R)
        assert np.isnan(m.per_image[1]).all() and np.isfinite(m.per_image[kept]).all()
        np.testing.assert_allclose(m.class_importance, m.per_image[kept].mean(0), rtol=1e-5)
        assert np.abs(m.share).sum() == pytest.approx(1.0, abs=1e-5)  # signed shares: |share| sums to 1
        assert np.all(m.ci_low <= m.class_importance + 1e-6) and np.all(m.class_importance <= m.ci_high + 1e-6)
        assert m.attrs["exact"] is False  # non-linear head: general path
    # presence maps: the coefficients at each grid position
    with h5py.File(stage_path(run, "extract", "a"), "r") as handle:
        maps = handle["maps"][()].astype(np.float32)
    from concepts.factorize import load_concepts

    U0 = load_concepts(run, "a").transform(maps[0])  # (49, R)
    np.testing.assert_allclose(data.presence[0], U0.T.reshape(R, GRID, GRID), rtol=2e-3, atol=2e-3)
    assert data.contribution.shape == (5, R, GRID, GRID)
    assert np.all(data.presence[1] == 0)
    # contribution maps sum to the gradient x input importance
    np.testing.assert_allclose(data.contribution[kept].sum((2, 3)), data.methods["gradient"].per_image[kept],
                               rtol=1e-2, atol=1e-3)
    fid = data.fidelity_attrs
    for name in data.methods:
        for key in ("c_deletion", "c_insertion", "c_mufidelity"):
            assert np.isfinite(fid[f"{name}_{key}"])
        assert data.fidelity[name]["deletion_curve"].shape == (R + 1,)
    # residual added back: the first deletion point is the model's logit on its own activations
    with torch.no_grad():
        logits = split.h_positions(torch.from_numpy(maps[kept]))[:, CLASS_INDEX].numpy()
    assert data.fidelity["gradient"]["deletion_curve"][0] == pytest.approx(float(np.mean(logits)), rel=1e-4)
    assert fid["reconstruction_logit_original"] == pytest.approx(float(np.mean(logits)), rel=1e-4)
    assert 0 < fid["reconstruction_relative_error"] < 0.5


def test_stage_resumes_refuses_mismatch_and_overwrites(fake_run):
    from concepts.importance import importance_run

    run, split, _, models = fake_run
    (path,) = importance_run(run, methods=["gradient"], classes=["a"], progress=False, models=models, device="cpu")
    stamp = path.stat().st_mtime_ns
    importance_run(run, methods="gradient", classes=["a"], progress=False, models=models, device="cpu")
    assert path.stat().st_mtime_ns == stamp  # finished: skipped
    with pytest.raises(ConfigMismatchError):
        importance_run(run, methods=["occlusion"], classes=["a"], progress=False, models=models, device="cpu")
    importance_run(run, methods=["occlusion"], classes=["a"], progress=False, models=models, device="cpu",
                   overwrite=True)
    with h5py.File(path, "r") as handle:
        assert "occlusion" in handle and "gradient" not in handle
    with pytest.raises(ConceptsError, match="importance.methods: .*lime.* is not allowed"):
        importance_run(run, methods=["lime"], progress=False, models=models)
    with pytest.raises(ConceptsError, match="no concepts"):
        importance_run(run, classes=["zzz"], progress=False, models=models)


def test_cli_importance_on_real_run(real_run, tmp_path):
    """`concepts importance` on a copy of the shared real run: skip, mismatch (exit 2), overwrite."""
    from concepts.cli import main
    from concepts.importance import load_importance

    if not (real_run / "concepts").is_dir():
        pytest.skip("the factorize stage is not available yet")
    run = tmp_path / "run"
    shutil.copytree(real_run, run, ignore=shutil.ignore_patterns("atlas", "exports"))
    classes = sorted(p.stem for p in (run / "importance").glob("*.h5"))
    assert classes, "real_run ran the importance stage"
    assert main(["importance", str(run), "--quiet"]) == 0  # all done: resumes
    assert main(["importance", str(run), "--designs", "16", "--quiet"]) == 2  # mismatch
    assert main(["importance", str(run), "--method", "gradient,occlusion", "--designs", "16", "--classes",
                 classes[0], "--overwrite", "--quiet"]) == 0
    data = load_importance(run, classes[0])
    assert list(data.methods) == ["gradient", "occlusion"] and data.attrs["designs"] == 16


def test_real_run_importance_is_consistent(real_run_any):
    """Default model (linear head) + residual: closed forms; the concept logit shares add up to h(UW)."""
    from concepts.importance import load_importance

    files = sorted((real_run_any / "importance").glob("*.h5"))
    if not files:
        pytest.skip("the factorize stage is not available yet")
    from concepts.models import load_split

    split, _ = load_split(device="cpu")
    weight, bias = split.linear_head()
    for path in files:
        data = load_importance(real_run_any, path.stem)
        attrs = data.attrs
        assert attrs["linear_head"] is True and attrs["mode"] == "crops"
        kept = data.kept
        grad, occ, sob = data.methods["gradient"], data.methods["occlusion"], data.methods["sobol"]
        assert grad.attrs["exact"] and sob.attrs["exact"]
        np.testing.assert_allclose(occ.per_image[kept], grad.per_image[kept], rtol=1e-4, atol=1e-5)
        s = grad.per_image[kept]
        np.testing.assert_allclose(sob.per_image[kept], s**2 / (s**2).sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
        c = attrs["class_index"]
        # sum_k s_k + b_c = logit of h(UW), averaged over images
        fid = data.fidelity_attrs
        assert s.sum(1).mean() + float(bias[c]) == pytest.approx(fid["reconstruction_logit_reconstructed"], rel=1e-3)
        # the ranking removes the logit faster than its reverse
        assert fid["gradient_c_deletion"] < fid["gradient_c_insertion"]


def test_stage_image_blocks_give_the_same_file(fake_run, tmp_path):
    """Processing images 2 at a time (bounded memory) gives the same artefact as all at once."""
    from concepts.importance import importance_run, load_importance

    run, split, _, models = fake_run
    importance_run(run, classes=["b"], designs=8, progress=False, models=models, device="cpu", image_block=1000)
    one = load_importance(run, "b")
    importance_run(run, classes=["b"], designs=8, progress=False, models=models, device="cpu", image_block=2,
                   overwrite=True)
    two = load_importance(run, "b")
    for name in one.methods:
        for key in ("per_image", "class_importance", "share", "ci_low", "ci_high"):
            np.testing.assert_allclose(getattr(two.methods[name], key), getattr(one.methods[name], key), rtol=1e-4,
                                       atol=1e-5, equal_nan=True)
        for key in ("deletion_curve", "insertion_curve", "mufidelity_per_image"):
            np.testing.assert_allclose(two.fidelity[name][key], one.fidelity[name][key], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(two.presence, one.presence)
    for key in ("reconstruction_logit_original", "reconstruction_relative_error", "sobol_c_deletion"):
        assert two.fidelity_attrs[key] == pytest.approx(one.fidelity_attrs[key], rel=1e-4)
