"""The visualisations as PNG files (for the exports; the atlas reads the arrays)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def target_filename(target: str) -> str:
    """``'concept:3'`` -> ``'concept_3'``; ``'subconcept:12'`` -> ``'subconcept_12'``; ``'logit:0'`` -> ``'logit'``."""
    kind, _, index = target.partition(":")
    return "logit" if kind == "logit" else f"{kind}_{index}"


def write_pngs(record, folder: str | os.PathLike) -> dict[str, str]:
    """Write ``<target>.png`` (RGB) and ``<target>_alpha.png`` (the transparency map, 8-bit grey) of every image of
    an :class:`~concepts.schema.FvizRecord` into ``folder``, and ``subconcept_<node>.png`` / ``_alpha.png`` of every
    sub-concept image (node ids as in the concepts file's ``tree/``); returns file name -> description."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pictures = list(zip(record.images, record.transparency, record.targets))
    sub = record.subconcepts
    if sub is not None:
        pictures += [(image, alpha, f"subconcept:{int(node)}")
                     for image, alpha, node in zip(sub.images, sub.transparency, sub.node)]
    written = {}
    for image, alpha, target in pictures:
        stem = target_filename(target)
        Image.fromarray(np.asarray(image, np.uint8), "RGB").save(folder / f"{stem}.png", optimize=False)
        grey = (np.clip(np.asarray(alpha, np.float32), 0, 1) * 255).round().astype(np.uint8)
        Image.fromarray(grey, "L").save(folder / f"{stem}_alpha.png", optimize=False)
        written[f"{stem}.png"] = f"MACO visualisation of {target}"
        written[f"{stem}_alpha.png"] = f"transparency map of {target} (accumulated |dL/dx|, max = 255)"
    return written


def rgba(image: np.ndarray, transparency: np.ndarray, clip_percentile: float = 80.0) -> np.ndarray:
    """The visualisation with its transparency map as alpha channel, as MACO shows it: (S, S, 4) uint8.

    The map is clipped at its ``clip_percentile`` percentile and divided by it (so the top fifth of the pixels the
    objective looked at are opaque), as in horama's ``plot_maco``."""
    alpha = np.asarray(transparency, np.float32)
    top = float(np.percentile(alpha, clip_percentile)) if alpha.size else 0.0
    alpha = np.clip(alpha / top, 0, 1) if top > 0 else np.ones_like(alpha)
    return np.concatenate([np.asarray(image, np.uint8), (alpha * 255).round().astype(np.uint8)[..., None]], axis=-1)
