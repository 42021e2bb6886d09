"""Prevalence: what stands in for importance when a run has no class score (``--head none``).

A concept's prevalence is the share of the class's images whose *strongest* concept it is: per image, the concept
with the largest mean coefficient over the image's feature positions. It says which concepts the images are made
of, not which ones a model's decision rests on; the importance file says so (``importance_kind = 'prevalence'``,
method ``prevalence``, no fidelity, contribution maps of zeros) and the exports carry it as method ``prevalence``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..schema import ImportanceRecord, MethodImportance
from .maps import presence_maps
from .methods import aggregate

METHOD = "prevalence"
KIND = "prevalence"


def strongest_concepts(coefficients: np.ndarray) -> np.ndarray:
    """(n_images, N, r) coefficients -> (n_images, r) one-hot of each image's strongest concept."""
    strength = np.asarray(coefficients, np.float64).mean(axis=1)
    out = np.zeros_like(strength, dtype=np.float32)
    if strength.size:
        out[np.arange(len(strength)), strength.argmax(axis=1)] = 1.0
    return out


def prevalence_record(data, grid, confidence: float, attrs: dict[str, Any], bar=None) -> ImportanceRecord:
    """The importance file of a class without a head, from its :class:`~concepts.importance.compute.ClassBlocks`."""
    per_kept, presence = [], []
    for idx in data.blocks:
        _, U, _, _ = data.load(idx)
        per_kept.append(strongest_concepts(U))
        presence.append(np.clip(presence_maps(U, grid), -65000, 65000).astype(np.float16))
        if bar is not None:
            bar.update(2 * len(idx))
    cache = data.cache
    kept, n_images, r = cache.mapped, cache.n_images, data.W.shape[0]
    values = np.concatenate(per_kept) if per_kept else np.zeros((0, r), np.float32)
    mean, share, low, high, share_low, share_high = aggregate(values, confidence)
    per_image = np.full((n_images, r), np.nan, np.float32)
    per_image[kept] = values
    maps = np.zeros((n_images, r, *grid), np.float16)
    maps[kept] = np.concatenate(presence) if presence else maps[kept]
    method = MethodImportance(
        method=METHOD, per_image=per_image, class_importance=mean, share=share, ci_low=low, ci_high=high,
        share_ci_low=share_low, share_ci_high=share_high, ranking=np.argsort(-mean, kind="stable"),
        attrs={"method": METHOD, "exact": True, "definition": "share of the class's images whose strongest concept "
                                                              "(largest mean coefficient) it is"})
    return ImportanceRecord(
        attrs={**attrs, "importance_kind": KIND, "methods": [METHOD], "linear_head": False},
        kept=np.isin(np.arange(n_images), kept), methods={METHOD: method},
        fidelity_attrs={"score": "none", "note": "no class score (--head none): no fidelity"}, fidelity={},
        presence=maps, contribution=np.zeros_like(maps),
        maps_attrs={"grid": list(grid), "contribution": "none: the run has no class score", "exact": False})
