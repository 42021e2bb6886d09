"""``export``: the importance tables and arrays (``RUN/exports/``)."""
from __future__ import annotations

import typing
from typing import Literal

from .base import Section, setting

Format = Literal["csv", "parquet", "json"]
FORMATS = typing.get_args(Format)


class ExportSettings(Section):
    """The export tables. Nothing here changes a stage artefact, so nothing is hashed."""

    section = "export"

    enabled: bool = setting(True, "write the exports at the end of `concepts run`", flag="--export",
                            stage_cli=False, hashed=False)
    formats: tuple[Format, ...] = setting(FORMATS, "table formats (repeat or comma-separate)", flag="--format",
                                          min_length=1, hashed=False, metavar="FORMAT")
    top_crops: int = setting(10, "top crops per concept listed in top_crops.csv (the atlas shows atlas.top_k)",
                             ge=0, le=1000, hashed=False)
