"""``atlas``: the static concept atlas (``RUN/atlas/``) and its PNG sheets."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from .base import Section, setting


class AtlasSettings(Section):
    """The atlas website and sheets. Nothing here changes a stage artefact, so nothing is hashed."""

    section = "atlas"

    enabled: bool = setting(True, "build the atlas at the end of `concepts run`", flag="--atlas", stage_cli=False,
                            hashed=False)
    top_k: int = setting(6, "crops shown per concept", ge=1, hashed=False)
    n_examples: int = setting(4, "images shown with their concept maps", flag="--examples", ge=0, hashed=False)
    n_overlay: int = setting(5, "concepts drawn on the example images", flag="--overlay-concepts", ge=1,
                             hashed=False)
    n_similar: int = setting(3, "similar concepts of other classes listed per concept", flag="--similar", ge=0,
                             hashed=False)
    thumb_size: int = setting(192, "pixel size of the photo thumbnails", ge=16, le=2048, hashed=False)
    image_format: Literal["jpeg", "webp"] = setting("jpeg", "format of the photo thumbnails", hashed=False)
    sheets: bool = setting(True, "write the PNG sheets (RUN/atlas/sheets)", hashed=False)

    @field_validator("top_k", mode="before")
    @classmethod
    def _legacy_top_k(cls, value: Any) -> Any:
        return 6 if value is None else value  # 0.1 configs wrote `top_k: null` for the default
