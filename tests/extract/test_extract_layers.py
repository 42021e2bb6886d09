"""Several layers in one forward pass: each layer's cache is the one-layer run's, the layout (main layer in the run
folder, the others in RUN/layers/<name>), resuming per layer, and every later stage per layer (``--layer``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from concepts.errors import ArtefactError
from concepts.evaluate import synthetic as syn
from concepts.extract import extract_run
from concepts.schema import RunFolder
from concepts.schema.hdf5 import peek_attrs

CLASSES = syn.class_names()[:2]
#: a small random-init CNN (64 px, conv-BN-ReLU blocks): fast
KW = dict(model="synth_cnn", pretrained=False, classes=CLASSES, workers=0, progress=False, device="cpu",
          patch_size=32)
LAYERS = ["features", "features.5", "features.8"]  # the default cut (8x8), two ReLUs (32x32, 16x16)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    syn.write_dataset(root, 3, seed=0, progress=False)
    return root / "images"


def _same_cache(a, b, exact: bool = True) -> None:
    if exact:
        assert np.array_equal(a.maps(), b.maps()) and np.array_equal(a.rows(), b.rows())
    else:  # float rounding (the values are float16)
        scale = float(np.abs(b.maps()).max())
        np.testing.assert_allclose(a.maps(), b.maps(), rtol=2e-3, atol=2e-3 * scale)
        np.testing.assert_allclose(a.rows(), b.rows(), rtol=2e-3, atol=2e-3 * scale)
    for name in ("row_image", "row_box", "row_position"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.images["path"] == b.images["path"] and a.images["sha256"] == b.images["sha256"]
    np.testing.assert_allclose(a.images["logit"], b.images["logit"], rtol=1e-5, atol=1e-5)
    for key in ("layer", "grid", "n_channels", "mode", "class_index", "config_hash"):
        assert a.attrs[key] == b.attrs[key], key


@pytest.mark.parametrize("mode", ["crops", "patches"])
def test_each_layer_of_one_pass_equals_a_one_layer_run(images, tmp_path, mode):
    extract_run(images, tmp_path / "multi", layer=LAYERS, mode=mode, **KW)
    multi = RunFolder(tmp_path / "multi")
    assert multi.layers() == {"features": multi.root, "features.5": multi.root / "layers" / "features.5",
                              "features.8": multi.root / "layers" / "features.8"}
    for layer in LAYERS:
        extract_run(images, tmp_path / layer, layer=layer, mode=mode, **KW)
        for class_id in CLASSES:
            with multi.at_layer(layer).activations(class_id) as a, RunFolder(tmp_path / layer).activations(
                    class_id) as b:
                _same_cache(a, b)


def test_a_convolution_layer_keeps_its_own_output(images, tmp_path):
    """A listed convolution followed by a batch norm is not folded into it (its output keeps its meaning, as in a
    one-layer run at it); the layers after it then differ from their one-layer runs by float rounding only."""
    extract_run(images, tmp_path / "multi", layer=["features", "features.6"], mode="patches", **KW)
    for layer, exact in (("features.6", True), ("features", False)):
        extract_run(images, tmp_path / layer, layer=layer, mode="patches", **KW)
        with RunFolder(tmp_path / "multi", layer=layer).activations(CLASSES[0]) as a, \
                RunFolder(tmp_path / layer).activations(CLASSES[0]) as b:
            _same_cache(a, b, exact)
    with RunFolder(tmp_path / "multi", layer="features.6").activations(CLASSES[0]) as a:
        assert a.maps().min() < 0  # the convolution's own output, before its norm and ReLU


def test_layers_resume_one_by_one_and_a_later_layer_goes_beside_the_main_one(images, tmp_path):
    run = tmp_path / "run"
    extract_run(images, run, mode="patches", **KW)
    main = {c: peek_attrs(run / "activations" / f"{c}.h5")["creation_id"] for c in CLASSES}
    report = extract_run(images, run, mode="patches", layer=["features", "features.8"], **KW)
    assert report.written == CLASSES  # the main layer was there: only the new one is computed, the main untouched
    assert {c: peek_attrs(run / "activations" / f"{c}.h5")["creation_id"] for c in CLASSES} == main
    assert sorted(p.name for p in (run / "layers" / "features.8" / "activations").glob("*.h5")) == \
        [f"{c}.h5" for c in CLASSES]
    again = extract_run(images, run, mode="patches", layer=["features", "features.8"], **KW)
    assert again.done == CLASSES and not again.written
    alone = extract_run(images, run, mode="patches", layer="features.8", **KW)  # a later layer alone: beside
    assert alone.done == CLASSES and RunFolder(run).layers()["features"] == run
    with pytest.raises(ArtefactError, match=r"no layer 'features.3' cached .*it has: features, features.8"):
        RunFolder(run, layer="features.3")


def test_every_later_stage_works_per_layer(images, tmp_path, capsys):
    from concepts.cli import main
    from concepts.export import load_export
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run

    run = tmp_path / "run"
    extract_run(images, run, mode="patches", layer=["features", "features.8"], max_images=2, **KW)
    report = factorize_run(run, layer=["features", "features.8"], n_concepts=3, progress=False)
    assert report.written == CLASSES and report.layers["features.8"].written == CLASSES
    importance_run(run, layer="features.8", methods=["gradient"], n_subsets=8, steps=2, progress=False)
    sub = RunFolder(run, layer="features.8")
    record = sub.importance(CLASSES[0], maps=False)
    assert record.attrs["layer"] == "features.8" and not record.attrs["linear_head"]
    assert not (run / "importance").exists()  # the main layer untouched
    assert main(["export", str(run), "--layer", "features.8", "--format", "csv", "-q"]) == 0
    export = load_export(run / "layers" / "features.8" / "exports")
    assert set(export.importances["layer"]) == {"features.8"}
    assert main(["info", str(run), "--layer", "features.8", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layer"] == "features.8" and list(summary["layers"]) == ["features", "features.8"]
    assert summary["provenance"]["grid"] == [16, 16]


def test_layer_settings_from_flags_and_old_configs(tmp_path):
    from concepts.cli import build_parser
    from concepts.cli.common import stage_settings
    from concepts.settings import load_config

    args = build_parser().parse_args(["extract", "imgs", "--out", str(tmp_path), "--layer", "a", "--layer", "b,a"])
    assert stage_settings(args, "extract", {"data.images": "imgs"}).model.layer == ("a", "b")
    (tmp_path / "old.yaml").write_text("model:\n  layer: blocks.5\n")
    cfg = load_config(tmp_path / "old.yaml")
    assert cfg.model.layer == ("blocks.5",) and cfg.model.main_layer == "blocks.5"
    assert load_config().model.layers == (None,)
    from concepts.extract.stage import model_request

    assert model_request(cfg)["layer"] == "blocks.5"  # what a 0.1 run recorded: its files stay valid


def test_concepts_run_exports_every_layer_as_concepts_export_does(images, tmp_path):
    """`concepts run` with two layers: both layers' exports, each equal to `concepts export RUN --layer L`."""
    import pandas as pd

    from concepts.cli import main
    from concepts.export import load_export
    from concepts.pipeline import load_config, run_pipeline

    run = tmp_path / "run"
    cfg = load_config(None, {
        "out": str(run), "data.images": str(images), "data.classes": CLASSES, "data.max_images": 2,
        "model.name": "synth_cnn", "model.pretrained": False, "model.device": "cpu",
        "model.layer": ["features", "features.8"], "extract.mode": "patches", "extract.workers": 0, "extract.patch_size": 32,
        "factorize.n_concepts": 3, "importance.methods": ["gradient"], "importance.n_subsets": 8,
        "importance.steps": 2, "executor.threads": 1, "atlas.enabled": False, "export.formats": ["csv"]})
    result = run_pipeline(cfg, progress=False)
    later = run / "layers" / "features.8" / "exports"
    assert result.outputs["export"] == str(run / "exports") and result.outputs["export features.8"] == str(later)
    for layer, folder in (("features", run / "exports"), ("features.8", later)):
        made = load_export(folder)
        assert set(made.importances["layer"]) == {layer} and set(made.importances["class_id"]) == set(CLASSES)
        by_hand = tmp_path / f"by_hand_{layer}"
        assert main(["export", str(run), "--layer", layer, "--format", "csv", "--out", str(by_hand), "-q"]) == 0
        again = load_export(by_hand)
        pd.testing.assert_frame_equal(made.dataframe(), again.dataframe())
        for name in ("diagnostics.csv", "classes.csv", "images.csv", "top_crops.csv"):
            assert (folder / name).read_bytes() == (by_hand / name).read_bytes(), (layer, name)
        banks, hand = np.load(folder / "concept_banks.npz"), np.load(by_hand / "concept_banks.npz")
        assert sorted(banks) == sorted(hand) and all(np.array_equal(banks[k], hand[k]) for k in banks)
    assert np.isfinite(load_export(later).importances["importance"]).all()
