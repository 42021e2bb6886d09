"""The split f = h o g reproduces the model for every supported family; loading rules."""
from __future__ import annotations

import pytest
import torch

from concepts.errors import ConceptsError
from concepts.models import ModelSplit, load_model, load_split

FAMILIES = [
    ("resnet18", None),
    ("convnext_atto", None),
    ("vit_tiny_patch16_224", None),
    ("tf_efficientnet_lite0", "blocks.5"),
    ("resnet18", "layer3"),
    ("vit_tiny_patch16_224", "blocks.6"),
]


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_default_model_split_is_exact_and_linear(images):
    split, info = load_split()
    assert info["model"] == "tf_efficientnet_lite0" and info["weights"].startswith("bundled:")
    with torch.no_grad():
        a = split.g(images)
        assert a.shape == (2, 7, 7, 1280) and (a >= 0).all()  # ReLU6 output: NMF-ready
        torch.testing.assert_close(split.h(a), split.model(images), rtol=1e-5, atol=1e-5)
        weight, bias = split.linear_head()
        torch.testing.assert_close(a.mean(dim=(1, 2)) @ weight.T + bias, split.model(images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,layer", FAMILIES)
def test_h_of_g_equals_f(name, layer, images):
    split, _ = load_split(name, layer=layer, pretrained=False)
    with torch.no_grad():
        a = split.g(images)
        torch.testing.assert_close(split.h(a), split.model(images), rtol=1e-4, atol=1e-4)
        pos = split.positions(a)
        assert pos.shape == (2, split.grid[0] * split.grid[1], split.n_channels)
        torch.testing.assert_close(split.h_positions(pos, split.prefix(a)), split.model(images), rtol=1e-4, atol=1e-4)


def test_token_layout_keeps_prefix_out_of_rows(images):
    split, _ = load_split("vit_tiny_patch16_224", pretrained=False)
    assert split.layout == "tokens" and split.n_prefix == 1 and split.grid == (14, 14)
    with torch.no_grad():
        a = split.g(images)
    assert a.shape[1] == 197 and split.positions(a).shape[1] == 196
    torch.testing.assert_close(split.prefix(a), a[:, :1])


@pytest.mark.parametrize("name,linear", [("resnet18", True), ("convnext_atto", False), ("vit_tiny_patch16_224", False)])
def test_linear_head_detected_only_when_exact(name, linear):
    split, _ = load_split(name, pretrained=False)
    assert (split.linear_head() is not None) == linear


def test_unknown_model_and_layer_are_clear_errors():
    with pytest.raises(ConceptsError, match="unknown model"):
        load_model("not_a_model_xyz")
    model, _ = load_model("resnet18", pretrained=False)
    with pytest.raises(ConceptsError, match="unknown layer"):
        ModelSplit(model, layer="layer9")


def test_class_token_vit_is_cut_where_patch_tokens_still_matter(images):
    """After the last block the class token is final: concepts of patch tokens could not change the logit."""
    split, info = load_split("vit_tiny_patch16_224", pretrained=False)
    assert info["layer"] == "blocks.10" and split.layout == "tokens"
    with torch.no_grad():
        a = split.g(images)
        edited = torch.cat([split.prefix(a), torch.zeros_like(split.positions(a))], dim=1)
        assert (split.h(edited) - split.h(a)).abs().max() > 1e-3
        late = ModelSplit(split.model, layer="norm")  # the final token sequence
        b = late.g(images)
        edited = torch.cat([late.prefix(b), torch.zeros_like(late.positions(b))], dim=1)
        torch.testing.assert_close(late.h(edited), late.h(b))
