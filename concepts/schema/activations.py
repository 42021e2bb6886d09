"""``RUN/activations/<class>.h5`` (stage 1): the contract, its writer and its reader (:class:`ActivationCache`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .hdf5 import (ArtefactWriter, check_free_space, identity, open_artefact, read_attrs, read_strings, reading,
                   string_dataset, write_attrs)
from .spec import COMMON_ATTRIBUTES, FileSpec, Item

ACTIVATIONS = FileSpec(
    stage="extract",
    path="RUN/activations/<class>.h5",
    summary="Activations of every image of one class at the cut layer, with the provenance of every row.",
    datasets=(
        Item("maps", "(n_images, N, D) float16", "concept rows of every image at full image (positions); with "
                                                 "`map_images`, only the mapped images' are written"),
        Item("pooled", "(n_images, D) float16", "the mean of each image's positions (its pooled feature), for every "
                                                "read image (files before 0.3: absent)", required=False),
        Item("prefix", "(n_images, P, D) float16", "class/register tokens of transformers, for `h`", required=False),
        Item("activations", "(R, D) float16", "one pooled row per crop (crops mode only)", required=False),
        Item("rows/image", "(R,) int32", "index into `images/*` of each row"),
        Item("rows/box", "(R, 4) int32", "x0, y0, x1, y1 of the row's crop or patch, in model-input pixels"),
        Item("rows/position", "(R, 2) int32", "grid (i, j) of the crop or feature-map position"),
        Item("images/path", "(n_images,) str", "every image listed, skipped ones too (absolute path)"),
        Item("images/sha256", "(n_images,) str", "sha256 of the file's bytes"),
        Item("images/error", "(n_images,) str", "why an image was skipped ('' when read)"),
        Item("images/width", "(n_images,) int32", "original width"),
        Item("images/height", "(n_images,) int32", "original height"),
        Item("images/skipped", "(n_images,) bool", "unreadable images: their `maps` row is zero"),
        Item("images/mapped", "(n_images,) bool", "images whose `maps` (and crop rows) are stored: every read image, "
                                                  "or those chosen by `map_images` (absent: every read image)",
             required=False),
        Item("images/logit", "(n_images,) float32", "the model's logit for the class index"),
        Item("images/predicted", "(n_images,) int32", "top-1 index (-1 for skipped images)"),
    ),
    attributes=COMMON_ATTRIBUTES + (
        Item("class_name", "str", "readable class name"),
        Item("class_index", "int", "logit explained for the class"),
        Item("class_index_source", "str", "wordnet | integer | labels | predicted"),
        Item("model", "str", "timm architecture"),
        Item("weights", "str", "bundled:<package> | checkpoint:<path> | timm-pretrained[:tag] | random"),
        Item("weights_sha256", "str", "sha256 of the weights"),
        Item("checkpoint", "str or null", "the checkpoint file, when one was given"),
        Item("layer", "str", "the cut ('features': timm's forward_features / forward_head boundary)"),
        Item("layout", "str", "spatial (B, H, W, D) or tokens (B, P+T, D)"),
        Item("grid", "[H, W]", "feature grid"),
        Item("n_prefix", "int", "prefix tokens P (0 for feature maps)"),
        Item("n_channels", "int", "D"),
        Item("preprocessing", "JSON", "input_size, interpolation, crop_pct, mean, std"),
        Item("mode", "str", "crops | patches"),
        Item("patch_size", "int", "crop side in input pixels (0 in patches mode)"),
        Item("stride", "int", "crop stride (0 in patches mode)"),
        Item("dtype", "str", "storage dtype"),
        Item("precision", "str", "autocast precision of the forward pass"),
        Item("compression", "str", "HDF5 compression"),
        Item("map_images", "int or null", "at most this many images per class keep their maps and crop rows "
                                          "(evenly spaced; null: all)"),
        Item("n_images", "int", "images listed"),
        Item("n_skipped", "int", "images that could not be read"),
        Item("head, head_request, head_source", "str", "the class score of `images/logit`: model | probe | "
                                                       "zeroshot | none, as asked (`--head`) (absent: model)"),
        Item("head_file, head_sha256, head_accuracy, head_prompts, head_text_model", "",
             "the head's provenance (probe: its file and held-out accuracy; zeroshot: prompts and text model)"),
    ),
    notes=(
        "In patches mode the rows are the `maps` positions of the mapped images, image after image (no "
        "`activations` dataset); `ActivationCache` hides the difference. Datasets are chunked (one image per `maps` "
        "chunk, ~1 MiB of rows per `activations` chunk) and uncompressed by default; the `maps` chunks of images "
        "that are not mapped are never written and take no space.",
    ),
)


@dataclass
class ImageTable:
    """``images/*``: one entry per listed image of the class."""

    path: list[str]
    sha256: list[str]
    error: list[str]
    width: np.ndarray
    height: np.ndarray
    skipped: np.ndarray
    logit: np.ndarray
    predicted: np.ndarray
    mapped: np.ndarray | None = None  # (n_images,) bool; None: every read image


@dataclass
class RowTable:
    """``rows/*``: the provenance of every row."""

    image: np.ndarray
    box: np.ndarray
    position: np.ndarray


class ActivationsWriter(ArtefactWriter):
    """Writes one activations file: ``with ActivationsWriter(path, ...) as w: w.write_maps(...); w.finish(...)``."""

    def __init__(self, path: str | os.PathLike, *, n_images: int, n_positions: int, n_channels: int,
                 n_prefix: int = 0, crops: bool = False, dtype=np.float16, compression: str | None = None,
                 expected_rows: int | None = None, n_mapped: int | None = None):
        super().__init__(path)
        self.expected_rows = expected_rows  # crop rows to come, if known: a small class gets a small chunk
        self.n_mapped = n_images if n_mapped is None else int(n_mapped)  # images whose maps are written
        self.shape = (int(n_images), int(n_positions), int(n_channels))
        self.n_prefix = int(n_prefix)
        self.crops = bool(crops)
        self.dtype = np.dtype(dtype)
        self.compression = None if compression in (None, "none") else compression

    def _create(self) -> None:
        handle = self.handle
        n, n_pos, d = self.shape
        crop_rows = (self.expected_rows or 0) if self.crops else 0
        values = (self.n_mapped * (n_pos + self.n_prefix) + n + crop_rows) * d  # maps, prefix, pooled, crop rows
        check_free_space(self.path, int(values * self.dtype.itemsize * 1.02) + (1 << 18))
        self._maps = handle.create_dataset("maps", shape=(n, n_pos, d), dtype=self.dtype, chunks=(1, n_pos, d),
                                           compression=self.compression)
        self._prefix = None
        if self.n_prefix:
            self._prefix = handle.create_dataset("prefix", shape=(n, self.n_prefix, d), dtype=self.dtype,
                                                 chunks=(1, self.n_prefix, d), compression=self.compression)
        self._pooled = handle.create_dataset("pooled", shape=(n, d), dtype=self.dtype, chunks=(max(1, min(n, 1024)), d),
                                             compression=self.compression)
        self._rows = None
        if self.crops:
            chunk = max(1, min(1024, (1 << 20) // (d * self.dtype.itemsize), self.expected_rows or 1024))
            self._rows = handle.create_dataset("activations", shape=(0, d), maxshape=(None, d), dtype=self.dtype,
                                               chunks=(chunk, d), compression=self.compression)

    def write_maps(self, where: list[int], maps: np.ndarray, prefix: np.ndarray | None = None) -> None:
        """Positions (and prefix tokens) of the images ``where`` (increasing indices: one HDF5 write)."""
        self._maps[where] = maps.astype(self.dtype)
        if self._prefix is not None and prefix is not None:
            self._prefix[where] = prefix.astype(self.dtype)
        self.handle.flush()  # a full disk shows now, while the file can still be discarded cleanly

    def write_pooled(self, where: list[int], pooled: np.ndarray) -> None:
        """Pooled rows (n, D) of the images ``where`` (increasing indices)."""
        self._pooled[where] = pooled.astype(self.dtype)
        self.handle.flush()  # as write_maps: a full disk shows now, while the file can be discarded cleanly

    def append_rows(self, rows: np.ndarray) -> None:
        """Pooled crop rows (crops mode), appended in row order."""
        n0 = self._rows.shape[0]
        self._rows.resize(n0 + len(rows), axis=0)
        self._rows[n0:] = rows.astype(self.dtype)
        self.handle.flush()

    def finish(self, *, rows: RowTable, images: ImageTable, attrs: dict[str, Any]) -> None:
        group = self.handle.create_group("rows")
        group.create_dataset("image", data=np.asarray(rows.image, np.int32))
        group.create_dataset("box", data=np.asarray(rows.box, np.int32))
        group.create_dataset("position", data=np.asarray(rows.position, np.int32))
        group = self.handle.create_group("images")
        for name in ("path", "sha256", "error"):
            string_dataset(group, name, list(getattr(images, name)))
        group.create_dataset("width", data=np.asarray(images.width, np.int32))
        group.create_dataset("height", data=np.asarray(images.height, np.int32))
        group.create_dataset("skipped", data=np.asarray(images.skipped, bool))
        mapped = ~np.asarray(images.skipped, bool) if images.mapped is None else np.asarray(images.mapped, bool)
        group.create_dataset("mapped", data=mapped & ~np.asarray(images.skipped, bool))
        group.create_dataset("logit", data=np.asarray(images.logit, np.float32))
        group.create_dataset("predicted", data=np.asarray(images.predicted, np.int32))
        write_attrs(self.handle, attrs)
        self._finished()


class ActivationCache:
    """One class's cached activations. Rows stream in chunks; nothing big is loaded at opening."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open_artefact(self.path, ACTIVATIONS)
        try:
            self.attrs = read_attrs(self._file)
            images = self._file["images"]
            self.images = {
                "path": read_strings(images["path"]),
                "sha256": read_strings(images["sha256"]),
                "error": read_strings(images["error"]),
                "width": images["width"][()],
                "height": images["height"][()],
                "skipped": images["skipped"][()].astype(bool),
                "logit": images["logit"][()],
                "predicted": images["predicted"][()],
            }
            self.kept = np.flatnonzero(~self.images["skipped"])
            #: the read images whose maps are stored (all of them unless extracted with ``map_images``)
            self.mapped = np.flatnonzero(images["mapped"][()].astype(bool)) if "mapped" in images else self.kept
            self.row_image = self._file["rows/image"][()]
            self.row_box = self._file["rows/box"][()]
            self.row_position = self._file["rows/position"][()]
        except BaseException:
            self.close()
            raise

    # -- context manager
    def __enter__(self) -> "ActivationCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_file", None) is not None and self._file.id.valid:
            self._file.close()

    # -- facts
    class_id = property(lambda self: self.attrs["class_id"])
    class_name = property(lambda self: self.attrs["class_name"])
    class_index = property(lambda self: int(self.attrs["class_index"]))
    layout = property(lambda self: self.attrs["layout"])
    grid = property(lambda self: tuple(self.attrs["grid"]))
    n_prefix = property(lambda self: int(self.attrs.get("n_prefix", 0)))
    mode = property(lambda self: self.attrs["mode"])
    n_images = property(lambda self: len(self.images["path"]))
    identity = property(lambda self: identity(self.attrs))

    @property
    def n_channels(self) -> int:
        return int(self._file["maps"].shape[-1])

    @property
    def n_positions(self) -> int:
        return int(self._file["maps"].shape[1])

    @property
    def n_rows(self) -> int:
        if "activations" in self._file:
            return int(self._file["activations"].shape[0])
        return len(self.mapped) * self.n_positions

    @property
    def block_rows(self) -> int:
        """Rows per HDF5 chunk (one image's positions in patches mode): reads aligned to it are contiguous."""
        if "activations" in self._file:
            chunks = self._file["activations"].chunks
            return int(chunks[0]) if chunks else 1024
        return self.n_positions

    # -- rows
    def read_rows(self, start: int, stop: int, dtype=np.float32) -> np.ndarray:
        """Rows ``start:stop`` (in row order) as one contiguous read."""
        start, stop = int(start), int(stop)
        if "activations" in self._file:
            return self._file["activations"][start:stop].astype(dtype)
        n = self.n_positions  # patches mode: rows are the positions of the mapped images, image after image
        if stop <= start:
            return np.zeros((0, self.n_channels), dtype)
        first, last = start // n, (stop - 1) // n
        block = self.maps(self.mapped[first:last + 1], dtype).reshape(-1, self.n_channels)
        return block[start - first * n: stop - first * n]

    def rows(self, dtype=np.float32) -> np.ndarray:
        """All rows (R, D)."""
        if "activations" in self._file:
            return self._file["activations"][()].astype(dtype)
        return self.maps(self.mapped, dtype=dtype).reshape(-1, self.n_channels)

    def iter_rows(self, chunk_rows: int = 65536, dtype=np.float32) -> Iterator[np.ndarray]:
        """Rows in order, ``chunk_rows`` at a time."""
        for start in range(0, self.n_rows, chunk_rows):
            yield self.read_rows(start, min(self.n_rows, start + chunk_rows), dtype)

    def sample_rows(self, n: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
        """A uniform sample of ``n`` rows without replacement (returned in row order)."""
        total = self.n_rows
        if n >= total:
            return self.rows(dtype)
        picked = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        return self.rows_at(picked, dtype)

    def rows_at(self, rows, dtype=np.float32) -> np.ndarray:
        """The rows of the increasing indices ``rows`` (read block by block)."""
        picked = np.asarray(rows, np.int64)
        out = np.empty((len(picked), self.n_channels), dtype)
        chunk = 65536
        for start in range(0, self.n_rows, chunk):
            lo, hi = np.searchsorted(picked, [start, start + chunk])
            if hi > lo:
                block = self.read_rows(start, min(self.n_rows, start + chunk), dtype)
                out[lo:hi] = block[picked[lo:hi] - start]
        return out

    # -- images
    def _per_image(self, name: str, images, dtype) -> np.ndarray:
        images = self.mapped if images is None else np.asarray(images)
        dataset = self._file[name]
        if len(images) == 0:
            return np.zeros((0, *dataset.shape[1:]), dtype)
        order = np.argsort(images)  # HDF5 reads need increasing indices
        data = dataset[images[order].tolist()]
        out = np.empty_like(data)
        out[order] = data
        return out.astype(dtype)

    def maps(self, images=None, dtype=np.float32) -> np.ndarray:
        """Positions of whole images (n, N, D); ``images`` is a list of image indices (default: the mapped images,
        i.e. every read one unless extracted with ``map_images``)."""
        return self._per_image("maps", images, dtype)

    def pooled(self, images=None, dtype=np.float32) -> np.ndarray:
        """Pooled rows (n, D): the mean of each image's positions (default: every read image). Files written before
        the pooled rows were stored: the mean of the maps."""
        images = self.kept if images is None else np.asarray(images)
        if "pooled" in self._file:
            return self._per_image("pooled", images, dtype)
        return self.maps(images, dtype).mean(axis=1).astype(dtype)

    def prefix(self, images=None, dtype=np.float32) -> np.ndarray | None:
        """Prefix (class/register) tokens (n, P, D) of transformers, else None."""
        return self._per_image("prefix", images, dtype) if "prefix" in self._file else None

    def __repr__(self) -> str:
        return (f"ActivationCache({self.class_id!r}: {self.n_rows} rows x {self.n_channels}, "
                f"{self.n_images} images, mode={self.mode})")


def read_activation_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The attributes of an activations file, checked like any read."""
    with reading(path, ACTIVATIONS) as handle:
        return read_attrs(handle)
