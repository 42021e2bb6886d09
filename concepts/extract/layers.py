"""Stage 1 for several layers: one forward pass per batch for every layer (:func:`extract_class_layers`).

The images of a class go through the model once (a :class:`~concepts.models.taps.LayerTap` with a hook per
layer): every layer's feature-map positions go to that layer's :class:`~concepts.schema.ActivationsWriter`, and
the logits of the same pass to the image table. In crops mode each batch of crops goes through the model once too,
and every layer's positions of each crop are pooled into that layer's rows. Each layer's file holds exactly what a
one-layer extraction at that layer writes (``tests/extract/test_extract_layers.py``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.taps import LayerTap
from ..runtime import autocast_dtype
from ..schema import ActivationsWriter
from .extractor import ImageLog, Sampler, image_batches
from .sampling import make_crops


class TapForward:
    """The tap under the chosen precision, without gradients (as :class:`~concepts.extract.extractor.Forward`)."""

    def __init__(self, tap: LayerTap, precision: str | None):
        self.tap = tap
        self.autocast = autocast_dtype(precision)

    def __call__(self, x: torch.Tensor, logits: bool = True):
        with torch.inference_mode(), torch.autocast(device_type=x.device.type, dtype=self.autocast or torch.bfloat16,
                                                    enabled=self.autocast is not None):
            acts, out = self.tap(x, logits=logits)
            return {k: v.float() for k, v in acts.items()}, None if out is None else out.float()


def crop_rows_layers(forward: TapForward, sampler: Sampler, x: torch.Tensor, batch: int) -> list[np.ndarray]:
    """One pooled row per crop of every image of ``x`` (image-major), for every layer of the tap, in its order."""
    splits = forward.tap.splits
    crops = make_crops(x, sampler.boxes, sampler.size)
    pooled: list[list[torch.Tensor]] = [[] for _ in splits]
    for start in range(0, len(crops), batch):
        acts, _ = forward(crops[start:start + batch], logits=False)
        for i, split in enumerate(splits):
            pooled[i].append(split.positions(acts[split.layer]).mean(dim=1))
    return [torch.cat(rows).cpu().numpy() for rows in pooled]


def _write_batch(forward: TapForward, writers: list[ActivationsWriter], samplers: list[Sampler], x: torch.Tensor,
                 kept: np.ndarray, chosen: np.ndarray, batch_size: int, scores: bool, first_batch=None):
    """The pooled rows of the images ``kept`` of one batch, and the positions (and crop rows) of those ``chosen``
    (mapped), into every layer's writer; returns the logits (None when ``scores`` is off)."""
    acts, logits = forward(x, logits=scores)
    pick = torch.from_numpy(chosen)
    where = kept[chosen].tolist()
    for i, (split, writer) in enumerate(zip(forward.tap.splits, writers)):
        a = acts[split.layer]
        prefix = split.prefix(a)
        positions = split.positions(a)
        if first_batch is not None and i == 0:
            first_batch(positions)
        writer.write_pooled(kept.tolist(), positions.mean(dim=1).cpu().numpy())
        if where:
            writer.write_maps(where, positions[pick.to(positions.device)].cpu().numpy(),
                              None if prefix is None else prefix[pick.to(prefix.device)].cpu().numpy())
    if samplers[0].mode == "crops" and where:
        rows = crop_rows_layers(forward, samplers[0], x[pick.to(x.device)], max(batch_size, 16))
        for writer, layer_rows in zip(writers, rows):
            writer.append_rows(layer_rows)
    return None if logits is None else logits.cpu().numpy()


def extract_class_layers(tap: LayerTap, files: list[Path], writers: list[ActivationsWriter],
                         samplers: list[Sampler], *, precision: str | None, batch_size: int, workers: int, warn,
                         progress: bool = True, desc: str = "", first_batch=None, mapped: np.ndarray | None = None,
                         scores: bool = True) -> ImageLog:
    """Stream ``files`` through the model once into one writer per layer of ``tap`` (same order); returns what was
    learnt about each image. ``warn(message)`` is called for every image that cannot be read; ``first_batch``,
    ``mapped`` and ``scores`` as in :func:`~concepts.extract.extractor.extract_class`."""
    forward = TapForward(tap, precision)
    first = tap.splits[0]
    log = ImageLog(len(files), int(getattr(first.model, "num_classes", 0) or 0) if scores else 0)
    for kept, x in image_batches(first, files, log, batch_size=batch_size, workers=workers, warn=warn,
                                 progress=progress, desc=desc):
        chosen = np.ones(len(kept), bool) if mapped is None else mapped[kept]
        logits = _write_batch(forward, writers, samplers, x, kept, chosen, batch_size, bool(log.n_classes),
                              first_batch)
        first_batch = None
        if logits is not None:
            log.logits[kept] = logits
        log.row_image.append(kept[chosen].astype(np.int32))
    return log
