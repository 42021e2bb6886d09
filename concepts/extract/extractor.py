"""Stage 1, the computation: one class's images through ``g`` (and the logits), written through the schema writer.

:func:`extract_class` streams the images batch by batch into an
:class:`~concepts.schema.activations.ActivationsWriter`: the feature-map positions of every image (``maps``), and in
crops mode one pooled row per crop. What it learns about each image (read or skipped, size, sha256, logits) is
collected in an :class:`ImageLog` for the file's ``images/*`` table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..datasets import ImageFiles
from ..models import ModelSplit
from ..runtime import autocast_dtype
from ..schema import ActivationsWriter, ImageTable, RowTable
from .sampling import crop_boxes, crop_positions, make_crops, position_boxes


class Forward:
    """``g`` (and the head) under the chosen precision, without gradients."""

    def __init__(self, split: ModelSplit, precision: str | None):
        self.split = split
        self.autocast = autocast_dtype(precision)

    def _run(self, fn, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device_type=x.device.type, dtype=self.autocast or torch.bfloat16,
                                                    enabled=self.autocast is not None):
            return fn(x).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.split.g, x)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return self._run(self.split.h, a)


@dataclass
class ImageLog:
    """Per-image facts gathered while extracting (the ``images/*`` and ``rows/*`` tables of the file)."""

    n_images: int
    n_classes: int
    ok: np.ndarray = field(init=False)
    width: np.ndarray = field(init=False)
    height: np.ndarray = field(init=False)
    logits: np.ndarray = field(init=False)
    sha256: list[str] = field(init=False)
    errors: list[str] = field(init=False)
    row_image: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ok = np.zeros(self.n_images, bool)
        self.width = np.zeros(self.n_images, np.int32)
        self.height = np.zeros(self.n_images, np.int32)
        self.logits = np.zeros((self.n_images, max(self.n_classes, 1)), np.float32)
        self.sha256, self.errors = [""] * self.n_images, [""] * self.n_images

    def record(self, batch: dict) -> tuple[np.ndarray, np.ndarray]:
        """Log a decoded batch; returns its image indices and which were read."""
        index = batch["index"].numpy()
        good = batch["ok"].numpy().astype(bool)
        for k, i in enumerate(index):
            self.ok[i], self.width[i], self.height[i] = good[k], batch["width"][k], batch["height"][k]
            self.sha256[i], self.errors[i] = batch["sha256"][k], batch["error"][k]
        return index, good

    def table(self, files: list[Path], class_index: int, mapped: np.ndarray | None = None) -> ImageTable:
        scored = self.ok & (self.n_classes > 0)  # no head: no logits (NaN) and no prediction (-1)
        logit = np.where(scored, self.logits[:, max(class_index, 0)], np.nan).astype(np.float32)
        return ImageTable(path=[str(Path(f).resolve()) for f in files], sha256=self.sha256, error=self.errors,
                          width=self.width, height=self.height, skipped=~self.ok, logit=logit,
                          predicted=np.where(scored, self.logits.argmax(1), -1).astype(np.int32),
                          mapped=None if mapped is None else self.ok & mapped)


class Sampler:
    """The rows of one image: its crops (pooled) or its feature-map positions, with their boxes."""

    def __init__(self, split: ModelSplit, mode: str, patch_size: int):
        size = split.preprocessing.input_size
        self.mode, self.size = mode, size
        grid = split.grid
        if mode == "crops":
            self.boxes = crop_boxes(size, patch_size)
            self.positions = crop_positions(size, patch_size)
        else:
            self.boxes = position_boxes(grid, size)
            self.positions = torch.tensor([(i, j) for i in range(grid[0]) for j in range(grid[1])], dtype=torch.int32)

    def crop_rows(self, forward: Forward, x: torch.Tensor, batch: int) -> np.ndarray:
        """One pooled row per crop of every image of ``x`` (image-major)."""
        crops = make_crops(x, self.boxes, self.size)
        pooled = [forward.split.positions(forward(crops[s:s + batch])).mean(dim=1) for s in range(0, len(crops), batch)]
        return torch.cat(pooled).cpu().numpy()

    def row_table(self, images: list[np.ndarray]) -> RowTable:
        n = len(self.boxes)
        kept = np.concatenate(images) if images else np.zeros(0, np.int32)
        return RowTable(image=np.repeat(kept.astype(np.int32), n),
                        box=np.tile(self.boxes.numpy(), (len(kept), 1)),
                        position=np.tile(self.positions.numpy(), (len(kept), 1)))


def image_batches(split, files: list[Path], log: "ImageLog", *, batch_size: int, workers: int, warn,
                  progress: bool = True, desc: str = ""):
    """``(kept, x)`` for each batch of readable images of ``files``, in order: their indices and the preprocessed
    batch on the split's device. Every image is recorded in ``log`` (read or not); ``warn(message)`` is called for
    each one that cannot be read."""
    from tqdm.auto import tqdm

    device = split.device
    loader = DataLoader(ImageFiles(files, split.preprocessing), batch_size=batch_size, shuffle=False,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False,
                        generator=torch.Generator().manual_seed(0))  # its base seed would come from the global RNG
    with tqdm(total=len(files), desc=f"  {desc}", unit="img", leave=False, disable=not progress) as bar:
        for batch in loader:
            index, good = log.record(batch)
            for i in index[~good]:
                warn(f"skipped {files[i]}: {log.errors[i]}")
            bar.update(len(index))
            if good.any():
                yield index[good], batch["image"][torch.from_numpy(good)].to(device, non_blocking=True)


def extract_class(split: ModelSplit, files: list[Path], writer: ActivationsWriter, sampler: Sampler, *,
                  precision: str | None, batch_size: int, workers: int, warn, progress: bool = True,
                  desc: str = "", first_batch=None, mapped: np.ndarray | None = None,
                  scores: bool = True) -> ImageLog:
    """Stream the images ``files`` through the model into ``writer``; returns what was learnt about each image.

    ``warn(message)`` is called for every image that cannot be read (it is kept in the table as skipped);
    ``first_batch(positions)`` with the concept rows (B, N, D) of the first batch, before the others are computed.
    ``mapped`` (one bool per file): the images whose maps and crop rows are stored (None: all); every read image
    gets its logits and pooled row. ``scores=False``: no head (``--head none``): no logits are computed or recorded.
    """
    forward = Forward(split, precision)
    log = ImageLog(len(files), int(getattr(split.model, "num_classes", 0) or 0) if scores else 0)
    for kept, x in image_batches(split, files, log, batch_size=batch_size, workers=workers, warn=warn,
                                 progress=progress, desc=desc):
        a = forward(x)
        if log.n_classes:
            log.logits[kept] = forward.head(a).cpu().numpy()
        prefix = split.prefix(a)
        positions = split.positions(a)
        if first_batch is not None:
            first_batch(positions)
            first_batch = None
        writer.write_pooled(kept.tolist(), positions.mean(dim=1).cpu().numpy())  # increasing: one write
        chosen = np.ones(len(kept), bool) if mapped is None else mapped[kept]
        if not chosen.any():
            continue
        pick = torch.from_numpy(chosen)
        where = kept[chosen].tolist()
        writer.write_maps(where, positions[pick.to(positions.device)].cpu().numpy(),
                          None if prefix is None else prefix[pick.to(prefix.device)].cpu().numpy())
        if sampler.mode == "crops":
            writer.append_rows(sampler.crop_rows(forward, x[pick.to(x.device)], max(batch_size, 16)))
        log.row_image.append(kept[chosen].astype(np.int32))
    return log
