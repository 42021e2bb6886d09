"""``model``: the model and where it is cut (``f = h o g``), its device and precision."""
from __future__ import annotations

import re
from typing import Literal, Union

from pydantic import field_validator

from .base import BAD, Section, setting

DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
#: the class score explained (concepts.heads.spec): the model's classifier, none, a linear probe or CLIP prompts
HEAD = re.compile(r"^(model|none|probe:.+|zeroshot:.+)$")


class ModelSettings(Section):
    """The model (timm name, checkpoint, or the bundled EfficientNet-Lite0) and its cut layer.

    The model's identity enters the config hash through what loading it resolves (weights sha256, layer,
    preprocessing), not through these strings.
    """

    section = "model"

    name: Union[str, None] = setting(None, "timm architecture (default: the bundled EfficientNet-Lite0)",
                                     flag="--model", kwarg="model", hashed=False)
    checkpoint: Union[str, None] = setting(None, "local weights for the model (state dict or timm checkpoint)",
                                           hashed=False)
    pretrained: bool = setting(True, "timm's pretrained weights when no checkpoint is given (else random init)",
                               extra_flags={"--random-init": False}, hashed=False)
    layer: Union[tuple[str, ...], None] = setting(
        None, "module where the model is cut (default: last feature map); repeat for several layers in one forward "
              "pass (the first is the run's main layer; later stages: the cached layer(s) to work on)",
        metavar="MODULE", hashed=False)
    layout: Literal["auto", "spatial", "tokens"] = setting("auto", "expected layout of the cut, checked when the "
                                                                   "model loads", hashed=False, stage_cli=False)
    head: str = setting("model", "the class score explained: model (its own classifier), probe:FILE (a linear head "
                               "from a file), zeroshot:PROMPTS (CLIP prompts file, open_clip models), none (no score: "
                               "importance becomes prevalence)", hashed=False,
                        allowed="model | none | probe:FILE | zeroshot:FILE", metavar="HEAD")
    device: str = setting("auto", "where the model runs", allowed="auto | cpu | cuda | cuda:N | mps", hashed=False)
    precision: Literal["fp32", "bf16", "fp16"] = setting("fp32", "autocast precision of the forward pass (bf16: "
                                                                 "~2x faster where the hardware has it)")

    @field_validator("layer")
    @classmethod
    def _layers(cls, value):
        """``layer: blocks.5`` (a 0.1 config) is the one-layer list; repeated names count once."""
        return tuple(dict.fromkeys(value)) or None if value is not None else None

    @property
    def layers(self) -> tuple[Union[str, None], ...]:
        """The cut layers in order (``(None,)``: the default cut only)."""
        return self.layer or (None,)

    @property
    def main_layer(self) -> Union[str, None]:
        """The first listed layer (None: the default cut): the layer of the run folder itself."""
        return self.layers[0]

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE.match(value):
            raise ValueError(BAD)
        return value

    @field_validator("head")
    @classmethod
    def _head(cls, value: str) -> str:
        if not HEAD.match(value.strip()):
            raise ValueError(BAD)
        return value.strip()
