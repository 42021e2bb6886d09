"""Inference rewrites (batch-norm folding, conv + activation fusion) keep the model's function."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from concepts.models import ModelSplit, load_split
from concepts.models.fusion import FoldedNorm, FusedConvAct, optimize_for_inference


def _images(n=2, size=224, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Random-init timm models have identity batch norms; give them statistics worth folding."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18"])
def test_optimized_model_computes_the_same_logits(name):
    import timm

    model = timm.create_model(name, pretrained=False).eval()
    _randomize_norms(model)
    original = copy.deepcopy(model)
    x = _images()
    done = optimize_for_inference(model, x)
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in original.modules())
    assert done["folded_norms"] == n_norms  # every norm of these two follows a convolution read by it alone
    assert done["fused_convolutions"] > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FoldedNorm) for m in model.modules()) == n_norms
    other = _images(3, seed=1)  # not the input the checks ran on
    with torch.no_grad():
        torch.testing.assert_close(model(other), original(other), rtol=1e-4, atol=1e-4)


class _ConvReadTwice(nn.Module):
    """conv -> bn, and the conv's raw output is also added back (functionally): folding would change it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        y = self.conv(x)
        z = torch.relu(self.bn(y)) + y
        return self.head(z.mean(dim=(2, 3)))


def test_fold_is_undone_when_another_reader_sees_the_convolution_output():
    model = _ConvReadTwice().eval()
    _randomize_norms(model)
    original = copy.deepcopy(model)
    x = _images(2, 32)
    done = optimize_for_inference(model, x)
    assert done == {"folded_norms": 0, "fused_convolutions": 0}
    assert isinstance(model.bn, nn.BatchNorm2d) and isinstance(model.conv, nn.Conv2d)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x))


def _pair_of_splits(layer: str):
    """The same random-weight EfficientNet twice, cut at ``layer``: as loaded, and optimised."""
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    _randomize_norms(net)
    fast_net = copy.deepcopy(net)
    done = optimize_for_inference(fast_net, _images(), keep=layer)
    return ModelSplit(net, layer=layer), ModelSplit(fast_net, layer=layer), done


def test_cut_layer_keeps_its_own_output():
    """Cut at a convolution that feeds a batch norm: g must still return the convolution's raw output."""
    layer = "blocks.5.0.conv_pw"
    plain, fast, done = _pair_of_splits(layer)
    names = dict(fast.model.named_modules())
    assert type(names[layer]) is not FusedConvAct and isinstance(names["blocks.5.0.bn1"], nn.BatchNorm2d)
    assert done["folded_norms"] > 0 and done["fused_convolutions"] > 0  # the others are rewritten
    x = _images(2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(fast.g(x), plain.g(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast.h(fast.g(x)), plain.h(plain.g(x)), rtol=1e-4, atol=1e-4)


def test_gradients_flow_through_fused_convolutions():
    """Gradient x input differentiates h; with a mid-network cut h contains fused convolutions."""
    plain, _ = load_split(layer="blocks.3", optimize=False)  # bundled weights: the same in both
    fast, info = load_split(layer="blocks.3")
    assert any(isinstance(m, FusedConvAct) for m in fast.model.blocks[4].modules())
    x = _images(1, seed=4)
    with torch.no_grad():
        a = plain.g(x)
    grads = []
    for split in (plain, fast):
        leaf = a.clone().requires_grad_(True)
        split.h(leaf)[0, 7].backward()
        grads.append(leaf.grad)
    assert grads[0].abs().sum() > 0
    assert float((grads[1] - grads[0]).norm() / grads[0].norm()) < 1e-5


def test_bf16_autocast_through_fused_convolutions_matches_eager_autocast():
    plain, _ = load_split(optimize=False)
    fast, info = load_split()
    assert info["fused_convolutions"] > 0
    x = _images(4, seed=5)
    with torch.inference_mode():
        exact = plain.g(x)
        with torch.autocast("cpu", torch.bfloat16):
            eager = plain.g(x).float()
            fused = fast.g(x).float()
    assert fused.dtype == torch.float32
    rel = lambda b: float((b - exact).norm() / exact.norm())  # noqa: E731
    assert rel(eager) < 0.06 and rel(fused) < 0.06  # bf16 rounding, same order for both
    assert abs(rel(fused) - rel(eager)) < 0.02


@pytest.mark.parametrize("size", [224, 112, 15, 14])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (3, 1), (5, 1)])
def test_fused_tf_same_convolution_matches_timm_padding(size, kernel, stride):
    """TF 'same' padding (asymmetric on even inputs at stride 2) without the padded copy: same outputs."""
    from timm.layers.conv2d_same import Conv2dSame

    torch.manual_seed(0)
    conv = Conv2dSame(8, 8, kernel, stride=stride, groups=8, bias=True).eval()
    fused = FusedConvAct(conv, nn.ReLU6())
    x = torch.randn(2, 8, size, size).contiguous(memory_format=torch.channels_last) * 3
    with torch.no_grad():
        expected = torch.clamp(conv(x), 0, 6)
        torch.testing.assert_close(fused(x), expected, rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", torch.bfloat16):
            got = fused(x)
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), expected, rtol=0.05, atol=0.05)
