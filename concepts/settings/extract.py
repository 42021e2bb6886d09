"""``extract``: how rows are cut from the images and stored (stage 1)."""
from __future__ import annotations

import typing
from typing import Literal

from .base import Section, setting

Mode = Literal["crops", "patches"]
#: crops: CRAFT's grid of square crops, one pooled row each; patches: one row per feature-map position
MODES = typing.get_args(Mode)


class ExtractSettings(Section):
    """Stage 1: crops or feature-map positions through the model up to the cut, cached to HDF5."""

    section = "extract"

    mode: Mode = setting("crops", "crops: CRAFT grid of square crops, one pooled row each; patches: one row per "
                                  "feature-map position")
    patch_size: int = setting(64, "crop side in input pixels (crops mode; stride 0.8 x patch)", ge=4)
    batch_size: int = setting(32, "images per forward batch", ge=1, hashed=False)
    workers: typing.Union[int, None] = setting(None, "DataLoader decoding workers (default: automatic)", ge=0,
                                               hashed=False, run_flag="--decode-workers")
    dtype: Literal["float16", "float32"] = setting("float16", "storage dtype of the cached activations")
    compression: Literal["none", "lzf", "gzip"] = setting("none", "HDF5 compression (none: fastest writes)",
                                                          hashed=False)
    map_images: typing.Union[int, None] = setting(
        None, "bounded cache: keep the feature maps (and crop rows) of at most this many images per class, evenly "
              "spaced; every image keeps its logit and pooled row (default: all)", ge=1)
