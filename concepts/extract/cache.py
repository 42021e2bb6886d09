"""Readers of ``RUN/activations/<class>.h5``: the schema's :class:`~concepts.schema.ActivationCache`, by class."""
from __future__ import annotations

import os

from ..schema import ActivationCache, RunFolder

__all__ = ["ActivationCache", "list_classes", "open_activations"]


def list_classes(run: str | os.PathLike, stage: str = "extract") -> list[str]:
    """Class ids with a finished file for ``stage`` in ``run``, sorted (an error names any damaged file)."""
    return RunFolder(run).classes(stage)


def open_activations(run: str | os.PathLike, class_id: str) -> ActivationCache:
    return RunFolder(run).activations(class_id)
