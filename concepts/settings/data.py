"""``data``: where the images are and which of them a run covers."""
from __future__ import annotations

from typing import Union

from .base import Section, setting


class DataSettings(Section):
    """Where the images are: ``images/<class>/*.jpg``, one folder per class (or a ``path label`` list file)."""

    section = "data"

    images: Union[str, None] = setting(None, "image folder IMAGES/<class>/*.jpg, or a text/CSV file of 'path label' "
                                             "lines", stage_cli=False)
    classes: Union[tuple[str, ...], None] = setting(None, "comma-separated class ids (default: every class)",
                                                    metavar="A,B,C", hashed=False)
    max_images: Union[int, None] = setting(None, "at most N images per class (default: all)", ge=1)
    labels: Union[str, None] = setting(None, "CSV 'folder,index' mapping class folders to logit indices")
