"""A CLIP zero-shot head through open_clip (an optional extra: the tests skip, saying why, without it): its logits
are open_clip's own ``logit_scale * cos``; weights come from a local checkpoint or open_clip's download, and offline
without weights loading stops with one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

open_clip = pytest.importorskip("open_clip", reason="open_clip is not installed (pip install open-clip-torch)")

from concepts.errors import ConceptsError  # noqa: E402
from concepts.heads.resolve import resolve_head  # noqa: E402
from concepts.models import load_split  # noqa: E402

TINY = "concepts-test-tiny-clip"
CONFIG = {"embed_dim": 32, "quick_gelu": False,
          "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 16},
          "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip architecture registered for the tests, and a prompts file."""
    folder = tmp_path_factory.mktemp("clip")
    (folder / f"{TINY}.json").write_text(json.dumps(CONFIG))
    open_clip.add_model_config(folder / f"{TINY}.json")
    prompts = folder / "prompts.csv"
    prompts.write_text("# class,prompt\ntench,a photo of a tench\ntench,a fish\nsaw,a photo of a chain saw\n"
                       "church,a photo of a church\n")
    return folder, prompts


def test_zero_shot_logits_are_open_clips_logit_scale_times_cosine(tiny_clip):
    _, prompts = tiny_clip
    split, info = load_split(f"open_clip:{TINY}", pretrained=False, device="cpu")
    assert info["weights"] == "random" and split.layer == "visual.transformer.resblocks.1"
    head = resolve_head(f"zeroshot:{prompts}", split, info)
    assert head.classes == ["tench", "saw", "church"] and head.provenance["head_text_model"]["model"]
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    clip = split.model.clip
    tokenizer = open_clip.get_tokenizer(TINY)
    with torch.no_grad():
        ours = head.split(x)
        image = clip.encode_image(x, normalize=True)
        texts = clip.encode_text(tokenizer(["a photo of a tench", "a fish", "a photo of a chain saw",
                                            "a photo of a church"]), normalize=True)
        classes = torch.stack([texts[:2].mean(0), texts[2], texts[3]])
        classes = classes / classes.norm(dim=-1, keepdim=True)
        theirs = clip.logit_scale.exp() * image @ classes.T
        single = clip.logit_scale.exp() * image @ texts[2:].T  # one prompt: exactly open_clip's logits
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-4)
    np.testing.assert_allclose(ours[:, 1:].numpy(), single.numpy(), atol=1e-4)
    assert head.split.linear_head() is None  # the image norm divides the logits: not linear in the features


def test_weights_from_a_local_checkpoint_and_a_one_line_offline_error(tiny_clip, monkeypatch):
    folder, _ = tiny_clip
    random_split, random_info = load_split(f"open_clip:{TINY}", pretrained=False, device="cpu")
    path = folder / "tiny.pt"
    torch.save(random_split.model.clip.state_dict(), path)
    split, info = load_split(f"open_clip:{TINY}", checkpoint=str(path), device="cpu")
    assert info["weights"] == f"checkpoint:{path.resolve()}"
    assert info["weights_sha256"] == random_info["weights_sha256"]
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConceptsError) as error:
        load_split("open_clip:ViT-B-32@openai", device="cpu")
    text = str(error.value)
    assert "\n" not in text and "ViT-B-32@openai" in text and "offline?" in text and "--checkpoint" in text


def test_zero_shot_needs_a_clip_model(tmp_path):
    from heads_helpers import tiny_split

    split, info = tiny_split("test_resnet")
    (tmp_path / "p.csv").write_text("a,a photo of a\n")
    with pytest.raises(ConceptsError, match="needs a CLIP model: --model open_clip"):
        resolve_head(f"zeroshot:{tmp_path / 'p.csv'}", split, info)


def test_a_zero_shot_run_records_its_prompts_and_importance_rebuilds_the_head(tiny_clip, tmp_path, val50):
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run
    from concepts.schema import open_run

    folder, _ = tiny_clip
    classes = ["n01440764", "n03000684"]
    prompts = folder / "imagenette.csv"
    prompts.write_text("n03000684,a photo of a chain saw\nn01440764,a photo of a tench\n")
    run = tmp_path / "run"
    extract_run(val50, run, model=f"open_clip:{TINY}", pretrained=False, head=f"zeroshot:{prompts}",
                classes=classes, max_images=2, mode="patches", workers=0, device="cpu", progress=False)
    factorize_run(run, method="semi_nmf", n_concepts=2, progress=False)
    importance_run(run, methods=["gradient"], steps=1, n_subsets=2, device="cpu", progress=False)
    for class_id, index in zip(classes, (1, 0)):  # the logit order is the prompts file's
        with open_run(run).activations(class_id) as cache:
            attrs = dict(cache.attrs)
            assert np.isfinite(cache.images["logit"][cache.kept]).all()
        assert attrs["head"] == "zeroshot" and attrs["class_index"] == index and attrs["class_index_source"] == "head"
        assert attrs["head_prompts"][class_id] and attrs["head_text_model"]["weights"] == "random"
        record = open_run(run).importance(class_id, maps=False)
        assert record.attrs["head"] == "zeroshot" and record.attrs["head_sha256"] == attrs["head_sha256"]
        assert record.attrs["class_index"] == index and record.attrs["linear_head"] is False


def test_the_download_path_fetches_a_pretrained_tag_from_a_local_url(tiny_clip, tmp_path, monkeypatch):
    """`open_clip:ARCH@TAG` without --checkpoint goes through open_clip's own download (urllib into its cache, as
    for the real weights), here from a file:// URL registered as the tag's pretrained config."""
    from open_clip import pretrained as registry

    served, _ = load_split(f"open_clip:{TINY}", pretrained=False, device="cpu")
    with torch.no_grad():  # weights that no initialisation gives: only a load of the served file can match them
        for value in served.model.clip.state_dict().values():
            if value.is_floating_point():
                value.mul_(-0.5).add_(0.01)
    weights = tmp_path / "served" / "tiny-weights.pt"
    weights.parent.mkdir()
    torch.save(served.model.clip.state_dict(), weights)
    _, served_info = load_split(f"open_clip:{TINY}", checkpoint=str(weights), device="cpu")
    monkeypatch.setitem(registry._PRETRAINED, TINY, {"local": registry._pcfg(url=weights.as_uri())})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # open_clip's cache: ~/.cache/clip
    split, info = load_split(f"open_clip:{TINY}@local", device="cpu")
    assert info["weights"] == "open_clip:local" and info["checkpoint"] is None
    assert info["weights_sha256"] == served_info["weights_sha256"]
    assert (tmp_path / "home" / ".cache" / "clip" / weights.name).read_bytes() == weights.read_bytes()
    default_tag, _ = load_split(f"open_clip:{TINY}", device="cpu")  # no tag: open_clip's first listed one
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = served.model.clip.encode_image(x).numpy()
        np.testing.assert_allclose(split.model.clip.encode_image(x).numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(default_tag.model.clip.encode_image(x).numpy(), expected, atol=1e-5)
