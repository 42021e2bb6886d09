"""Read ``RUN/activations/<class>.h5`` without loading more than asked for."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from ..artefacts import class_files, read_attrs, read_strings, stage_path
from ..errors import ConceptsError


class ActivationCache:
    """One class's cached activations. Rows stream in chunks; nothing is loaded at opening."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConceptsError(f"activations file not found: {self.path}")
        self._file = h5py.File(self.path, "r")
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
        self.row_image = self._file["rows/image"][()]
        self.row_box = self._file["rows/box"][()]
        self.row_position = self._file["rows/position"][()]

    # -- context manager
    def __enter__(self) -> "ActivationCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._file.id.valid:
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
        return len(self.kept) * self.n_positions

    # -- rows
    def read_rows(self, start: int, stop: int, dtype=np.float32) -> np.ndarray:
        """Rows ``start:stop`` (in row order) as one contiguous read."""
        return self._row_slice(int(start), int(stop), dtype)

    def _row_slice(self, start: int, stop: int, dtype) -> np.ndarray:
        if "activations" in self._file:
            return self._file["activations"][start:stop].astype(dtype)
        n = self.n_positions  # patches mode: rows are the positions of the kept images, image after image
        first, last = start // n, (stop - 1) // n
        block = self.maps(self.kept[first:last + 1], dtype).reshape(-1, self.n_channels)
        return block[start - first * n: stop - first * n]

    def rows(self, dtype=np.float32) -> np.ndarray:
        """All rows (R, D)."""
        if "activations" in self._file:
            return self._file["activations"][()].astype(dtype)
        return self.maps(dtype=dtype).reshape(-1, self.n_channels)

    def iter_rows(self, chunk_rows: int = 65536, dtype=np.float32) -> Iterator[np.ndarray]:
        """Rows in order, ``chunk_rows`` at a time."""
        for start in range(0, self.n_rows, chunk_rows):
            yield self._row_slice(start, min(self.n_rows, start + chunk_rows), dtype)

    def sample_rows(self, n: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
        """A uniform sample of ``n`` rows without replacement (returned in row order)."""
        total = self.n_rows
        if n >= total:
            return self.rows(dtype)
        picked = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        out = np.empty((n, self.n_channels), dtype)
        chunk = 65536
        for start in range(0, total, chunk):
            sel = picked[(picked >= start) & (picked < start + chunk)]
            if len(sel):
                block = self._row_slice(start, min(total, start + chunk), dtype)
                where = np.searchsorted(picked, sel)
                out[where] = block[sel - start]
        return out

    # -- images
    def _per_image(self, name: str, images, dtype) -> np.ndarray:
        images = self.kept if images is None else np.asarray(images)
        dataset = self._file[name]
        if len(images) == 0:
            return np.zeros((0, *dataset.shape[1:]), dtype)
        order = np.argsort(images)  # HDF5 reads need increasing indices
        data = dataset[images[order].tolist()]
        out = np.empty_like(data)
        out[order] = data
        return out.astype(dtype)

    def maps(self, images=None, dtype=np.float32) -> np.ndarray:
        """Positions of whole images (n, N, D); ``images`` is a list of image indices (default: kept images)."""
        return self._per_image("maps", images, dtype)

    def prefix(self, images=None, dtype=np.float32) -> np.ndarray | None:
        """Prefix (class/register) tokens (n, P, D) of transformers, else None."""
        return self._per_image("prefix", images, dtype) if "prefix" in self._file else None

    def __repr__(self) -> str:
        return (f"ActivationCache({self.class_id!r}: {self.n_rows} rows x {self.n_channels}, "
                f"{self.n_images} images, mode={self.mode})")


def list_classes(run: str | os.PathLike, stage: str = "extract") -> list[str]:
    """Class ids with a finished file for ``stage`` in ``run``, sorted."""
    return list(class_files(run, stage))


def open_activations(run: str | os.PathLike, class_id: str) -> ActivationCache:
    path = stage_path(run, "extract", class_id)
    if not path.is_file():
        raise ConceptsError(f"no activations for class {class_id!r} in {run} (run `concepts extract` first)")
    return ActivationCache(path)
