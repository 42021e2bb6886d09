"""``atlas``: the static concept atlas (``RUN/atlas/``), its figures for papers and its PNG sheets."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from .base import Section, setting

#: the methods a class page can be ranked by ("auto": gradient x input, else Sobol, else occlusion)
AtlasMethod = Literal["auto", "sobol", "gradient", "occlusion"]


class AtlasSettings(Section):
    """The atlas website, figures and sheets. Nothing here changes a stage artefact, so nothing is hashed."""

    section = "atlas"

    enabled: bool = setting(True, "build the atlas at the end of `concepts run`", flag="--atlas", stage_cli=False,
                            hashed=False)
    method: AtlasMethod = setting("auto", "importance method the pages rank concepts by first (the reader can "
                                          "switch); auto: gradient x input (share of the logit), else Sobol",
                                  run_flag="--atlas-method", hashed=False)
    top_k: int = setting(10, "crops shown per concept", ge=1, le=100, hashed=False)
    n_examples: int = setting(4, "images shown per kind (most sure, wrong, least sure) with their concept maps",
                              flag="--examples", ge=0, le=100, hashed=False)
    n_overlay: int = setting(5, "concepts drawn on the example images and image pages", flag="--overlay-concepts",
                             ge=1, le=50, hashed=False)
    n_similar: int = setting(3, "similar concepts listed per concept, in its class and in other classes",
                             flag="--similar", ge=0, le=50, hashed=False)
    n_aligned: int = setting(5, "classes listed per concept by alignment with the head's class weights",
                             flag="--aligned", ge=0, le=50, hashed=False)
    max_points: int = setting(200, "images on the 2-D image map, each with its own page", ge=1, le=100000,
                              hashed=False)
    atoms_per_page: int = setting(200, "atoms listed per page of the shared dictionary's index (dataset-scope "
                                       "runs; every atom also has its own page)", ge=1, le=100000, hashed=False)
    thumb_size: int = setting(192, "largest side of the photo files, in pixels (the model-input square, cut "
                                   "from the original)", ge=16, le=2048, hashed=False)
    crop_size: int = setting(112, "displayed side of a crop in CSS pixels (files are up to twice that, for 2x "
                                  "screens, never more than the original's pixels)", ge=32, le=512, hashed=False)
    image_format: Literal["webp", "jpeg", "avif"] = setting(
        "webp", "format of the photo and crop files (avif: where Pillow has libavif, else WebP with a note; about "
                "as large as WebP at equal sharpness here, see docs/atlas.md)", hashed=False)
    quality: int = setting(70, "WebP/JPEG/AVIF quality of the photo and crop files", ge=10, le=100, hashed=False)
    tint: bool = setting(False, "tint the crops with the concept's presence map when a page opens (a toggle "
                                "on every page)", hashed=False)
    alignment: bool = setting(True, "load the model once to align concepts with the classes of its linear head",
                              hashed=False)
    figures: bool = setting(False, "write figures for papers (RUN/atlas/figures/<class>/*.svg, .pdf, 300-dpi "
                                   ".png)", hashed=False)
    sheets: bool = setting(False, "write one PNG sheet per class (RUN/atlas/sheets)", hashed=False)

    @field_validator("top_k", mode="before")
    @classmethod
    def _legacy_top_k(cls, value: Any) -> Any:
        return 10 if value is None else value  # 0.1 configs wrote `top_k: null` for the default
