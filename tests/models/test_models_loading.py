"""Model loading: checkpoint formats, mismatch errors, the bundled key map, and no process-wide side effects."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch

from concepts.schema import file_sha256
from concepts.errors import ConceptsError
from concepts.models import Preprocessing, load_model, load_split
from concepts.models import bundled
from concepts.models.loading import read_checkpoint, state_dict_sha256

SMALL = "test_resnet"  # a timm test architecture: 92 tensors, 0.5M parameters


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def reference():
    """A randomly initialised SMALL and its state dict, with weights unlike the seed-0 init."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        model = timm.create_model(SMALL).eval()
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(model, state):
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


# ---------------------------------------------------------------- checkpoint formats

@pytest.mark.parametrize("layout", ["plain.pth", "plain.pt", "module-prefix.pth", "compiled-prefix.pth",
                                    "timm-train.pth.tar", "model-entry.pt", "ema-only.pth"])
def test_checkpoint_formats_load_by_name(tmp_path, reference, layout):
    model, state = reference
    noise = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}  # other weights, same names
    kind, suffix = layout.split(".", 1)
    obj = {
        "plain": state,
        "module-prefix": {f"module.{k}": v for k, v in state.items()},  # DataParallel / DDP
        "compiled-prefix": {f"_orig_mod.{k}": v for k, v in state.items()},  # a torch.compile'd model
        # timm's train.py: raw weights in 'state_dict', the EMA copy beside them; the raw weights are loaded
        "timm-train": {"epoch": 3, "arch": SMALL, "state_dict": state, "state_dict_ema": noise,
                       "optimizer": {"state": {}, "param_groups": []}, "version": 2},
        "model-entry": {"model": state, "epoch": 1},
        "ema-only": {"model_ema": {f"module.{k}": v for k, v in state.items()}, "epoch": 1},
    }[kind]
    path = tmp_path / f"ckpt.{suffix}"
    torch.save(obj, path)
    loaded, info = load_model(SMALL, checkpoint=path)
    _assert_same_state(loaded, state)
    assert info["weights"] == f"checkpoint:{path.resolve()}" and info["checkpoint"] == str(path.resolve())
    assert info["weights_sha256"] == file_sha256(path)


def test_safetensors_checkpoint(tmp_path, reference, images):
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")
    model, state = reference
    path = tmp_path / "weights.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded, info = load_model(SMALL, checkpoint=path)
    _assert_same_state(loaded, state)
    assert info["weights_sha256"] == file_sha256(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)


# ---------------------------------------------------------------- mismatches are one-line errors

def _refusal(tmp_path, obj, name=SMALL, filename="bad.pth") -> str:
    path = tmp_path / filename
    torch.save(obj, path)
    with pytest.raises(ConceptsError) as err:
        load_model(name, checkpoint=path)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_renamed_tensors_with_equal_shapes_are_refused_not_loaded_by_order(tmp_path, reference):
    """Same tensor count and shapes in the same order, other names: the old loader took it by order."""
    _, state = reference
    message = _refusal(tmp_path, {f"x{i}": v for i, v in enumerate(state.values())})
    assert "does not fit test_resnet" in message and "92 tensors, the model has 92" in message
    first = list(state)[:3]
    assert f"missing {first[0]}, {first[1]}, {first[2]} (+89 more)" in message
    assert "unexpected x0, x1, x2 (+89 more)" in message


def test_bundled_file_as_a_checkpoint_is_refused(tmp_path):
    """The bundled file matches tf_efficientnet_lite0 tensor for tensor in shape, but not by name."""
    with pytest.raises(ConceptsError, match=r"does not fit tf_efficientnet_lite0: 296 tensors, the model has 296; "
                                            r"missing conv_stem.weight, .*unexpected _conv_stem.weight"):
        load_model("tf_efficientnet_lite0", checkpoint=bundled.bundled_weights_path())


def test_other_architecture_missing_unexpected_and_shape_errors(tmp_path, reference):
    _, state = reference
    r18 = timm.create_model("resnet18").state_dict()
    message = _refusal(tmp_path, r18, name="resnet34")
    assert "does not fit resnet34" in message and "missing layer1.2.conv1.weight" in message
    message = _refusal(tmp_path, {k: v for k, v in state.items() if k != "fc.bias"})
    assert message.endswith("missing fc.bias") and "unexpected" not in message
    message = _refusal(tmp_path, {**state, "extra.weight": torch.zeros(3)})
    assert "unexpected extra.weight" in message and "missing" not in message
    ten_classes = timm.create_model(SMALL, num_classes=10).state_dict()
    message = _refusal(tmp_path, ten_classes)
    assert "shape (checkpoint vs model) fc.weight (10, " in message and "missing" not in message


def test_unreadable_and_empty_checkpoints(tmp_path):
    with pytest.raises(ConceptsError, match="checkpoint not found"):
        load_model(SMALL, checkpoint=tmp_path / "missing.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConceptsError, match="cannot read checkpoint .*garbage.pth") as err:
        load_model(SMALL, checkpoint=tmp_path / "garbage.pth")
    assert "\n" not in str(err.value)
    torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "no-weights.pth")
    with pytest.raises(ConceptsError, match="holds no state dict .*epoch, optimizer"):
        read_checkpoint(tmp_path / "no-weights.pth")


# ---------------------------------------------------------------- the bundled EfficientNet-Lite0

@pytest.fixture(scope="module")
def bundled_raw():
    return torch.load(bundled.bundled_weights_path(), map_location="cpu", weights_only=True)


def test_bundled_key_map_is_one_to_one_with_equal_shapes(bundled_raw):
    target = timm.create_model("tf_efficientnet_lite0").state_dict()
    names = bundled.bundled_key_map(bundled_raw)
    assert len(bundled_raw) == len(target) == 296
    assert set(names) == set(bundled_raw)  # every key mapped
    assert len(set(names.values())) == len(names)  # no name twice
    assert set(names.values()) == set(target)  # every timm tensor covered
    for key, name in names.items():
        assert bundled_raw[key].shape == target[name].shape, (key, name)
    # the rule-based names are what loading by tensor order used to give, key by key
    assert [names[k] for k in bundled_raw] == list(target)


def test_bundled_key_map_refuses_what_it_does_not_know(bundled_raw, monkeypatch):
    keys = list(bundled_raw)
    with pytest.raises(ConceptsError, match="_blocks.3._se_reduce.weight"):
        bundled.bundled_key_map(keys + ["_blocks.3._se_reduce.weight"])
    with pytest.raises(ConceptsError, match="_blocks.16"):
        bundled.bundled_key_map(keys + ["_blocks.16._bn0.weight"])
    with pytest.raises(ConceptsError, match="_swish"):
        bundled.bundled_key_map(keys + ["_swish.weight"])
    monkeypatch.setitem(bundled.SEPARABLE_BLOCK, "_bn2", "bn1")  # a table that names two tensors alike
    with pytest.raises(ConceptsError, match="both to 'blocks.0.0.bn1.weight'"):
        bundled.bundled_key_map(keys)


def test_bundled_model_equals_the_by_order_load_on_a_real_photo(val50, bundled_raw):
    from concepts.datasets import load_image
    from concepts.datasets.labels import resolve_label

    folder = val50 / "n01440764"  # tench, ImageNet class 0
    photos = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    if not photos:
        pytest.skip(f"no photo in {folder}")
    model, info = load_model()
    assert info["weights"] == f"bundled:{bundled.BUNDLED_WEIGHTS}"
    assert info["weights_sha256"] == file_sha256(bundled.bundled_weights_path())
    by_order = timm.create_model("tf_efficientnet_lite0").eval()  # how 0.1.0 loaded the package
    by_order.load_state_dict(dict(zip(by_order.state_dict(), bundled_raw.values())))
    prep = Preprocessing.from_model(model)
    x = torch.stack([prep.normalize(prep.to_tensor(load_image(p)[0])) for p in photos[:4]])
    with torch.no_grad():
        logits, expected = model(x), by_order(x)
    assert torch.equal(logits, expected)
    # The first photo (val 293) is a miss of the model itself (top-3: 64, 62, 58 with either load); the next are tench.
    predicted = logits.argmax(1).tolist()
    assert predicted.count(resolve_label("n01440764", 1000).index) >= 3 and resolve_label("n01440764", 1000).index == 0, predicted


def test_bundled_weights_classify_real_photos(val50):
    """The renamed weights make a working ImageNet model (~70% top-1 on val50)."""
    from concepts.datasets import load_image
    from concepts.datasets.labels import resolve_label

    split, _ = load_split()
    prep = split.preprocessing
    xs, ys = [], []
    for folder in sorted(val50.iterdir()):
        if folder.is_dir():
            for f in sorted(folder.iterdir())[:3]:
                xs.append(prep.normalize(prep.to_tensor(load_image(f)[0])))
                ys.append(resolve_label(folder.name, 1000).index)
    with torch.no_grad():
        pred = split.model(torch.stack(xs)).argmax(1)
    accuracy = (pred == torch.tensor(ys)).float().mean().item()
    assert accuracy >= 0.5, accuracy


# ---------------------------------------------------------------- no process-wide side effects

@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224", SMALL])
def test_random_init_keeps_the_global_rng_and_the_seed_zero_weights(name):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2024)
        before = torch.random.get_rng_state()
        model, info = load_model(name, pretrained=False)
        assert torch.equal(torch.random.get_rng_state(), before)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # what 0.1.0 did before a random init: old runs' weights_sha256 must still match
        old = timm.create_model(name, pretrained=False)
    _assert_same_state(model, old.state_dict())
    assert info["weights"] == "random" and info["weights_sha256"] == state_dict_sha256(old.state_dict())


def test_bundled_and_checkpoint_loads_keep_the_global_rng(tmp_path, reference):
    _, state = reference
    torch.save(state, tmp_path / "w.pth")
    before = torch.random.get_rng_state()
    load_model()
    load_model(SMALL, checkpoint=tmp_path / "w.pth")
    assert torch.equal(torch.random.get_rng_state(), before)


UNREACHABLE = "http://127.0.0.1:9"  # the discard port on this machine: nothing listens, connections are refused

_OFFLINE_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    mode = sys.argv[1]
    report = {"imported_before": "huggingface_hub" in sys.modules}
    if mode == "cli":
        from concepts.runtime import hub_offline_if_unreachable
        report["offline"] = hub_offline_if_unreachable()
    import huggingface_hub.constants as hub
    from concepts.errors import ConceptsError
    from concepts.models import load_model

    def state():
        return [os.environ.get("HF_HUB_OFFLINE"), hub.HF_HUB_OFFLINE]

    during = []
    def no_wait(seconds):  # huggingface_hub's back-off between retries: record the switch, do not wait
        during.append(state())
    time.sleep = no_wait
    report["before"] = state()
    start = time.perf_counter()
    try:
        load_model("resnet10t")
        report["error"] = None
    except ConceptsError as exc:
        report["error"] = str(exc)
    report["seconds"] = time.perf_counter() - start
    report["after"], report["during"] = state(), during
    print(json.dumps(report))
""")


def _offline_run(mode: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=UNREACHABLE, HF_HOME=str(tmp_path / "hf-home"), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT, mode], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_failing_pretrained_load_leaves_the_hub_switches_alone(tmp_path):
    """Library call, hub unreachable: the download is tried (and retried), the offline switch never flipped."""
    report = _offline_run("library", tmp_path)
    assert report["before"] == report["after"] == [None, False]
    assert report["during"] and all(s == [None, False] for s in report["during"])  # it really tried the hub
    assert "could not get pretrained weights for 'resnet10t'" in report["error"]
    assert "--checkpoint" in report["error"] and "\n" not in report["error"]


def test_cli_switch_makes_an_unreachable_hub_fail_at_once(tmp_path):
    """hub_offline_if_unreachable before any hub import: HF_HUB_OFFLINE=1, no retries, the same clear error."""
    report = _offline_run("cli", tmp_path)
    assert report["imported_before"] is False and report["offline"] is True
    assert report["before"] == report["after"] == ["1", True]  # set by the switch, untouched by load_model
    assert report["during"] == [] and report["seconds"] < 10
    assert "--checkpoint" in report["error"] and "\n" not in report["error"]


def test_hub_switch_after_the_hub_is_imported(monkeypatch):
    import huggingface_hub.constants as hub

    from concepts.runtime import hub_offline_if_unreachable, hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored (unset) by monkeypatch after the test
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    with socket.create_server(("127.0.0.1", 0)) as server:  # a local endpoint that accepts connections
        monkeypatch.setattr(hub, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable(timeout=1.0)
        assert hub_offline_if_unreachable(timeout=1.0) is False
        assert os.environ["HF_HUB_OFFLINE"] == "0" and hub.HF_HUB_OFFLINE is False
    monkeypatch.setattr(hub, "ENDPOINT", UNREACHABLE)
    assert not hub_reachable(timeout=1.0)
    assert hub_offline_if_unreachable(timeout=1.0) is True
    assert os.environ["HF_HUB_OFFLINE"] == "1" and hub.HF_HUB_OFFLINE is True
    assert hub_offline_if_unreachable(timeout=1.0) is True  # already offline: no probe needed
