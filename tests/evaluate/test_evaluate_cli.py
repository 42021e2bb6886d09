"""End to end: `concepts synth` -> `concepts extract --model synth_cnn` -> `concepts evaluate`."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from concepts.cli import main


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    before = torch.get_num_threads()
    root = tmp_path_factory.mktemp("synth")
    data, run = root / "data", root / "run"
    assert main(["synth", "--out", str(data), "--images-per-class", "4", "--train-per-class", "40",
                 "--epochs", "1", "--threads", "1", "--device", "cpu", "--quiet"]) == 0
    assert main(["extract", str(data / "images"), "--out", str(run), "--model", "synth_cnn", "--checkpoint",
                 str(data / "synth_cnn.pt"), "--labels", str(data / "labels.csv"), "--mode", "patches",
                 "--threads", "1", "--workers", "0", "--device", "cpu"]) == 0
    yield data, run
    torch.set_num_threads(before)


@pytest.mark.slow
def test_synth_writes_dataset_and_loadable_weights(synth_run):
    data, run = synth_run
    meta = json.loads((data / "synthetic.json").read_text())
    assert meta["model"]["name"] == "synth_cnn" and len(meta["classes"]) == 5
    assert len(list((data / "images").glob("*/*.png"))) == 20
    assert len(list((data / "masks").glob("*/*.npz"))) == 20
    from concepts.evaluate import synthetic_model as sm
    from concepts.models import load_split

    split, info = load_split("synth_cnn", str(data / "synth_cnn.pt"), device="cpu")
    assert tuple(split.grid) == (8, 8) and split.linear_head() is not None
    model = sm.load(data / "synth_cnn.pt")
    x = sm.to_tensor(np.zeros((2, 64, 64, 3), np.uint8))
    with torch.no_grad():
        torch.testing.assert_close(split.h(split.g(x)), model(x), rtol=1e-4, atol=1e-4)
    from concepts.extract.cache import list_classes

    assert list_classes(run) == [f"{i}_{n}" for i, (n, _) in enumerate(__import__(
        "concepts.evaluate.synthetic", fromlist=["CLASSES"]).CLASSES)]


@pytest.mark.slow
def test_evaluate_cli_writes_report(synth_run, tmp_path):
    _, run = synth_run
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), "--out", str(out), "--methods", "nmf,pca,random", "--n-concepts", "3",
                 "--seeds", "0,1", "--subsamples", "2", "--classes", "3_sun", "--threads", "1", "--device", "cpu",
                 "--quiet"]) == 0
    frame = pd.read_csv(out / "results.csv")
    assert list(frame["method"]) == ["oracle (masks)", "nmf", "pca", "random"]
    oracle = frame.iloc[0]
    assert 0.3 < oracle["key_iou"] <= 1 and np.isnan(oracle["rel_error"])  # the ceiling row has recovery only
    frame = frame.iloc[1:]
    for col in ("rel_error", "sparsity_l0", "stability", "c_deletion", "c_insertion", "c_mufidelity",
                "recovery_iou", "key_iou", "purity", "top_is_key"):
        assert frame[col].notna().all(), col
    assert ((frame["rel_error"] >= 0) & (frame["rel_error"] <= 1.0 + 1e-6)).all()
    assert (frame["stability"] <= 1 + 1e-6).all()
    # PCA is deterministic: refits with other seeds and subsamples find nearly the same atoms
    assert frame.set_index("method").loc["pca", "stability_seed"] > 0.99
    for name in ("summary.csv", "report.md", "report.html"):
        assert (out / name).is_file()
    assert "| nmf |" in (out / "report.md").read_text()


def test_evaluate_cli_errors(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "concepts: error:" in capsys.readouterr().err
