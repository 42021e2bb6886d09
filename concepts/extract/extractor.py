"""Stage 1: images -> activations at the cut layer, cached to ``RUN/activations/<class>.h5``."""
from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..artefacts import (atomic_h5, base_attributes, config_hash, existing_status, stage_path, string_dataset,
                         write_attrs)
from ..datasets import ImageFiles, discover, read_labels_file, resolve_label
from ..errors import ConceptsError
from ..models import ModelSplit, load_split
from ..runtime import autocast_dtype, cpu_has_native_bf16, default_workers, set_threads
from .sampling import MODES, crop_boxes, crop_positions, crop_stride, make_crops, position_boxes

DTYPES = {"float16": np.float16, "float32": np.float32}
COMPRESSIONS = (None, "lzf", "gzip")  # uncompressed by default: 2.2 GB/s written against 107 / 26 MB/s


def _say(message: str, progress: bool) -> None:
    if progress:
        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def extraction_config(info: dict[str, Any], mode: str, patch_size: int, dtype: str, precision: str | None,
                      max_images: int | None) -> dict[str, Any]:
    """The settings that decide the content of an activations file (hashed into ``config_hash``)."""
    return {
        "stage": "extract",
        "model": info["model"],
        "weights_sha256": info["weights_sha256"],
        "layer": info["layer"],
        "preprocessing": info["preprocessing"],
        "mode": mode,
        "patch_size": int(patch_size) if mode == "crops" else None,
        "stride": crop_stride(patch_size) if mode == "crops" else None,
        "dtype": dtype,
        "precision": precision or "fp32",
        "max_images": max_images,
    }


class _Forward:
    """g (and the logits) under the chosen precision, without gradients."""

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


def extract_class(
    split: ModelSplit,
    info: dict[str, Any],
    class_id: str,
    files: list[Path],
    path: Path,
    *,
    mode: str = "crops",
    patch_size: int = 64,
    label=None,
    batch_size: int = 32,
    workers: int = 0,
    precision: str | None = None,
    dtype: str = "float16",
    compression: str | None = None,
    config: dict[str, Any] | None = None,
    progress: bool = True,
) -> None:
    """Extract one class into ``path`` (atomically); raises ``_EmptyClass`` (and writes nothing) when no image
    of the class could be read."""
    prep = split.preprocessing
    size = prep.input_size
    num_classes = int(getattr(split.model, "num_classes", 0) or 0) or None
    forward = _Forward(split, precision)
    device = split.device
    np_dtype = DTYPES[dtype]
    n_images, grid, d = len(files), split.grid, split.n_channels
    n_pos = grid[0] * grid[1]
    boxes = crop_boxes(size, patch_size) if mode == "crops" else position_boxes(grid, size)
    grid_pos = crop_positions(size, patch_size) if mode == "crops" else torch.tensor(
        [(i, j) for i in range(grid[0]) for j in range(grid[1])], dtype=torch.int32)
    crop_batch = max(batch_size, 16)

    loader = DataLoader(ImageFiles(files, prep), batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    ok = np.zeros(n_images, bool)
    width = np.zeros(n_images, np.int32)
    height = np.zeros(n_images, np.int32)
    sha, errors = [""] * n_images, [""] * n_images
    all_logits = np.zeros((n_images, num_classes or 1), np.float32)
    row_image, row_box, row_pos = [], [], []

    with atomic_h5(path) as handle:
        maps = handle.create_dataset("maps", shape=(n_images, n_pos, d), dtype=np_dtype,
                                     chunks=(1, n_pos, d), compression=compression)
        prefix_ds = None
        if split.layout == "tokens" and split.n_prefix:
            prefix_ds = handle.create_dataset("prefix", shape=(n_images, split.n_prefix, d), dtype=np_dtype,
                                              chunks=(1, split.n_prefix, d), compression=compression)
        acts = None
        if mode == "crops":
            acts = handle.create_dataset("activations", shape=(0, d), maxshape=(None, d), dtype=np_dtype,
                                         chunks=(max(1, min(1024, (1 << 20) // (d * np_dtype().itemsize))), d),
                                         compression=compression)
        bar = tqdm(total=n_images, desc=f"  {class_id}", unit="img", leave=False, disable=not progress)
        for batch in loader:
            index = batch["index"].numpy()
            good = batch["ok"].numpy().astype(bool)
            for k, i in enumerate(index):
                ok[i], width[i], height[i] = good[k], batch["width"][k], batch["height"][k]
                sha[i], errors[i] = batch["sha256"][k], batch["error"][k]
                if not good[k]:
                    _say(f"warning: skipped {files[i]}: {errors[i]}", progress)
            bar.update(len(index))
            if not good.any():
                continue
            kept = index[good]
            x = batch["image"][torch.from_numpy(good)].to(device, non_blocking=True)
            a = forward(x)
            all_logits[kept] = forward.head(a).cpu().numpy()
            where = kept.tolist()  # increasing: one HDF5 write per batch
            maps[where] = split.positions(a).cpu().numpy().astype(np_dtype)
            if prefix_ds is not None:
                prefix_ds[where] = split.prefix(a).cpu().numpy().astype(np_dtype)
            if mode == "crops":
                crops = make_crops(x, boxes, size)
                pooled = torch.cat([split.positions(forward(crops[s:s + crop_batch])).mean(dim=1)
                                    for s in range(0, len(crops), crop_batch)])
                rows = pooled.cpu().numpy().astype(np_dtype)
                n0 = acts.shape[0]
                acts.resize(n0 + len(rows), axis=0)
                acts[n0:] = rows
            for i in kept:
                row_image.append(np.full(len(boxes), i, np.int32))
                row_box.append(boxes.numpy())
                row_pos.append(grid_pos.numpy())
        bar.close()
        if not ok.any():
            raise _EmptyClass()

        label = label or resolve_label(class_id, num_classes or 0, None)
        index_source, class_index, class_name = label.source, label.index, label.name
        if class_index is None:
            predicted = all_logits[ok].argmax(1)
            class_index = int(Counter(predicted.tolist()).most_common(1)[0][0])
        rows_group = handle.create_group("rows")
        rows_group.create_dataset("image", data=np.concatenate(row_image))
        rows_group.create_dataset("box", data=np.concatenate(row_box))
        rows_group.create_dataset("position", data=np.concatenate(row_pos))
        images_group = handle.create_group("images")
        string_dataset(images_group, "path", [str(Path(f).resolve()) for f in files])
        string_dataset(images_group, "sha256", sha)
        string_dataset(images_group, "error", errors)
        images_group.create_dataset("width", data=width)
        images_group.create_dataset("height", data=height)
        images_group.create_dataset("skipped", data=~ok)
        images_group.create_dataset("logit", data=np.where(ok, all_logits[:, class_index], np.nan).astype(np.float32))
        images_group.create_dataset("predicted", data=np.where(ok, all_logits.argmax(1), -1).astype(np.int32))
        attrs = dict(base_attributes())
        attrs.update(
            stage="extract", class_id=class_id, class_name=class_name, class_index=int(class_index),
            class_index_source=index_source, model=info["model"], weights=info["weights"],
            weights_sha256=info["weights_sha256"], checkpoint=info.get("checkpoint"), layer=info["layer"],
            layout=split.layout, grid=list(grid), n_prefix=split.n_prefix, n_channels=d,
            preprocessing=info["preprocessing"], mode=mode,
            patch_size=int(patch_size) if mode == "crops" else 0,
            stride=crop_stride(patch_size) if mode == "crops" else 0, dtype=dtype, precision=precision or "fp32",
            compression=compression or "none",
            n_images=n_images, n_skipped=int((~ok).sum()), config=config or {},
            config_hash=config_hash(config or {}),
        )
        write_attrs(handle, attrs)


class _EmptyClass(Exception):
    pass


def extract_run(
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | None = None,
    checkpoint: str | None = None,
    layer: str | None = None,
    mode: str = "crops",
    patch_size: int = 64,
    classes: list[str] | None = None,
    max_images: int | None = None,
    labels: str | os.PathLike | dict[str, int] | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    dtype: str = "float16",
    compression: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    pretrained: bool = True,
    split: ModelSplit | None = None,
    info: dict[str, Any] | None = None,
) -> list[Path]:
    """Extract activations of every selected class of ``images`` into ``out/activations/<class>.h5``.

    Finished classes are skipped (resume); a class file made with other settings raises
    :class:`~concepts.errors.ConfigMismatchError` unless ``overwrite``. Returns the class files.
    Pass a preloaded ``split``/``info`` (from :func:`concepts.models.load_split`) to reuse a model.
    """
    if mode not in MODES:
        raise ConceptsError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if dtype not in DTYPES:
        raise ConceptsError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    compression = None if compression in (None, "none") else compression
    if compression not in COMPRESSIONS:
        raise ConceptsError(f"unknown compression {compression!r}; choose none, lzf or gzip")
    autocast_dtype(precision)  # validates
    found = discover(images, classes, max_images)
    table = read_labels_file(labels) if isinstance(labels, (str, os.PathLike)) else labels
    set_threads(threads)
    if split is None:
        split, info = load_split(model, checkpoint, layer, device, pretrained=pretrained)
    assert info is not None
    if not int(getattr(split.model, "num_classes", 0) or 0):
        raise ConceptsError(f"model {info['model']!r} has no classifier head (num_classes = 0): concepts are "
                            "explained for a class logit")
    if split.device.type == "cpu" and autocast_dtype(precision) == torch.bfloat16 and cpu_has_native_bf16() is False:
        _say("warning: this CPU has no bfloat16 instructions (AVX512-BF16/AMX): bf16 is emulated and slower than "
             "fp32 here; use --precision fp32", progress)
    config = extraction_config(info, mode, patch_size, dtype, precision, max_images)
    digest = config_hash(config)
    workers = default_workers(split.device) if workers is None else int(workers)
    written: list[Path] = []
    todo = []
    for cls in found:
        path = stage_path(out, "extract", cls.class_id)
        if not cls.files:
            _say(f"warning: class {cls.class_id!r} has no files; skipped", progress)
            continue
        if existing_status(path, digest, overwrite) == "done":
            written.append(path)
            continue
        num_classes = int(getattr(split.model, "num_classes", 0) or 0)
        todo.append((cls, path, resolve_label(cls.class_id, num_classes, table)))
    if not todo:
        _say(f"extract: all {len(written)} classes already done in {out}; nothing to do", progress)
        return sorted(written)
    for cls, path, label in tqdm(todo, desc="extract", unit="class", disable=not progress):
        try:
            extract_class(split, info, cls.class_id, cls.files, path, mode=mode, patch_size=patch_size,
                          label=label, batch_size=batch_size, workers=workers, precision=precision, dtype=dtype,
                          compression=compression, config=config, progress=progress)
            written.append(path)
        except _EmptyClass:
            _say(f"warning: class {cls.class_id!r}: no readable image; skipped", progress)
    return sorted(written)
