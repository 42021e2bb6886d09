"""``fviz``: MACO feature visualisations of every concept and of the class logit (optional stage of `concepts run`)."""
from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator

from .base import BAD, Section, setting


class FvizSettings(Section):
    """One image per concept (and one for the class logit), made by MACO: the phase of the image's Fourier spectrum
    is optimised under a fixed natural magnitude spectrum, on random crops (Fel et al. 2023).

    Defaults: 256 steps of 6 crops (the step count of xplique's MaCo, the crops of horama's), crops of half to
    two thirds of a 512-pixel image (a few instances of the concept per image, crops slightly downsampled to the
    model's input). A CPU wants fewer steps and crops: configs/demo.yaml.
    """

    section = "fviz"

    enabled: bool = setting(False, "make the feature visualisations in `concepts run` (off by default: "
                                   "minutes per class on a CPU)", flag="--fviz", stage_cli=False, hashed=False)
    steps: int = setting(256, "optimisation steps per image", ge=1, le=100_000, run_flag="--fviz-steps")
    lr: float = setting(0.1, "NAdam learning rate on the phases (radians)", gt=0, le=100, run_flag="--fviz-lr")
    crops: int = setting(6, "random crops per image and step", ge=1, le=1024, run_flag="--fviz-crops")
    crop_min: float = setting(0.5, "smallest crop side, as a fraction of the image side", gt=0, le=1,
                              run_flag="--fviz-crop-min")
    crop_max: float = setting(0.65, "largest crop side, as a fraction of the image side", gt=0, le=1,
                              run_flag="--fviz-crop-max")
    noise: float = setting(0.02, "std of the Gaussian noise added to every crop (pixel values in [0, 1])", ge=0,
                           le=1, run_flag="--fviz-noise")
    image_size: int = setting(512, "side of the visualisation in pixels", ge=32, le=4096,
                              run_flag="--fviz-size")
    power: float = setting(2.0, "power of the cosine in the objective dot(a, v) * cos(a, v)^power", ge=0, le=16,
                          run_flag="--fviz-power")
    cos_floor: float = setting(0.1, "the cosine is clamped below at this value", ge=0, le=1,
                              run_flag="--fviz-cos-floor")
    logit: bool = setting(True, "also visualise the class logit", run_flag="--fviz-logit")
    # hashed by the stage only for a class that has sub-concepts (fviz.stage.wanted_config): other files keep
    # their hash
    subconcepts: bool = setting(True, "also visualise every sub-concept of a recursive concepts file (one MACO run "
                                      "per group of siblings)", run_flag="--fviz-subconcepts", hashed=False)
    spectrum: str = setting("images", "magnitude spectrum: 'images' (estimated on the class's own photos) or a "
                                      ".npy file (3, N, N//2+1) or (N, N//2+1), rfft layout", metavar="SOURCE",
                            allowed="images | PATH.npy", run_flag="--fviz-spectrum")
    spectrum_images: int = setting(64, "photos of the class the spectrum is estimated on (evenly spread)", ge=1,
                                  run_flag="--fviz-spectrum-images")
    seed: int = setting(0, "random seed of the phases, crops and noise", ge=0, run_flag="--fviz-seed")
    batch: int = setting(16, "images optimised together: one forward pass for their batch x crops crops (~50 MB "
                                   "each for EfficientNet-Lite0 at 224 px)", ge=1,
                         hashed=False, run_flag="--fviz-batch")

    @field_validator("spectrum")
    @classmethod
    def _spectrum(cls, value: str) -> str:
        if value != "images" and not str(value).endswith(".npy"):
            raise ValueError(BAD)
        return value

    @model_validator(mode="after")
    def _crop_range(self) -> Any:
        if self.crop_min > self.crop_max:
            raise ValueError(f"crop_min ({self.crop_min}) is larger than crop_max ({self.crop_max})")
        return self
