"""The fixed magnitude spectrum of MACO, and the colour statistics it lives in.

MACO (Fel et al. 2023) optimises only the phase of an image's Fourier spectrum; the magnitude is fixed to that of
natural images. :func:`estimate_spectrum` measures it on photos (the run's own images: nothing is downloaded):

* colours: the mean colour ``mean`` (3,) and ``color`` (3, 3), a square root of the pixels' colour covariance
  (``color @ color.T == cov``), so that ``z = color^-1 (x - mean)`` has uncorrelated unit-variance channels;
* magnitude: the mean over images of ``|rfft2(z)|`` (orthonormal FFT), per decorrelated channel, with the DC term
  set to zero (the mean colour is added apart), rescaled so that an image made from it has the images' mean
  within-image variance.

An image is then ``x = mean + color @ irfft2(magnitude * exp(i * phase))``: its spectrum (in the decorrelated
colours) is ``magnitude`` exactly, whatever the phase (see :mod:`concepts.fviz.maco`). :meth:`Spectrum.resized`
carries a spectrum to another image size (on normalised frequencies), :func:`load_spectrum` reads a user's
``.npy`` (its shape of spectrum is kept, its scale replaced by the images' energy).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ConceptsError


@dataclass(frozen=True)
class Spectrum:
    """A magnitude spectrum (``(3, N, N // 2 + 1)``, rfft layout, orthonormal) with its colour statistics."""

    magnitude: np.ndarray  # (3, N, N//2 + 1) float32, DC = 0
    mean: np.ndarray  # (3,) mean colour in [0, 1]
    color: np.ndarray  # (3, 3): x - mean = color @ z
    variance: np.ndarray  # (3,) per-pixel variance of each decorrelated channel of an image made from it
    source: str = "images"
    n_images: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.magnitude.shape[1])

    def resized(self, size: int) -> "Spectrum":
        """The spectrum of a ``size`` x ``size`` image: the same magnitude at the same normalised frequencies, the
        same per-pixel variance."""
        if size == self.size:
            return self
        magnitude = resize_magnitude(self.magnitude, size)
        return replace(self, magnitude=normalise_energy(magnitude, self.variance))

    def digest(self) -> str:
        """sha256 of the magnitude and colour statistics (what an image made from it depends on)."""
        h = hashlib.sha256()
        for array in (self.magnitude, self.mean, self.color, self.variance):
            h.update(np.ascontiguousarray(array, np.float32).tobytes())
        return h.hexdigest()


# ----------------------------------------------------------------------------- helpers on rfft layouts
def _negative_rows(n: int) -> np.ndarray:
    return (-np.arange(n)) % n


def hermitian_columns(n: int) -> list[int]:
    """The rfft columns whose entries must be Hermitian along the rows (0, and n/2 for an even n)."""
    return [0, n // 2] if n % 2 == 0 else [0]


def symmetrise_magnitude(magnitude: np.ndarray) -> np.ndarray:
    """Make the Hermitian columns of an rfft-layout magnitude symmetric (``|X[k]| = |X[-k]|``) and zero the DC."""
    out = np.array(magnitude, np.float64, copy=True)
    n = out.shape[-2]
    neg = _negative_rows(n)
    for col in hermitian_columns(n):
        out[..., :, col] = 0.5 * (out[..., :, col] + out[..., neg, col])
    out[..., 0, 0] = 0.0
    return out


def spectrum_energy(magnitude: np.ndarray) -> np.ndarray:
    """Per-pixel variance (per channel) of a real image whose orthonormal rfft2 has this magnitude."""
    n = magnitude.shape[-2]
    width = 2 * (magnitude.shape[-1] - 1) if n % 2 == 0 else 2 * magnitude.shape[-1] - 1
    weight = np.full(magnitude.shape[-1], 2.0)
    weight[hermitian_columns(width)] = 1.0  # the columns that appear once in the full spectrum
    return (np.asarray(magnitude, np.float64) ** 2 * weight).sum(axis=(-2, -1)) / (n * width)


def normalise_energy(magnitude: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """``magnitude`` rescaled per channel so that an image made from it has per-pixel ``variance``."""
    magnitude = symmetrise_magnitude(magnitude)
    energy = spectrum_energy(magnitude)
    scale = np.sqrt(np.asarray(variance, np.float64) / np.maximum(energy, 1e-20))
    return (magnitude * scale[:, None, None]).astype(np.float32)


def resize_magnitude(magnitude: np.ndarray, size: int) -> np.ndarray:
    """Resample an rfft-layout magnitude ``(C, N, N//2+1)`` to ``(C, size, size//2+1)`` on normalised frequencies
    (rows are shifted so that negative and positive frequencies are interpolated apart, not across the wrap)."""
    import torch
    import torch.nn.functional as F

    magnitude = np.asarray(magnitude, np.float32)
    n = magnitude.shape[-2]
    shifted = np.fft.fftshift(magnitude, axes=-2)  # rows from -n/2 to n/2 - 1
    tensor = torch.from_numpy(np.ascontiguousarray(shifted))[None]
    out = F.interpolate(tensor, size=(size, size // 2 + 1), mode="bilinear", align_corners=False,
                        antialias=size < n)[0].numpy()
    return symmetrise_magnitude(np.fft.ifftshift(out, axes=-2)).astype(np.float32)


# ----------------------------------------------------------------------------- estimation
def colour_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (3,), color (3, 3))`` of images ``(n, 3, H, W)`` in [0, 1]: ``color @ color.T`` is the pixels'
    colour covariance (its symmetric square root, so that decorrelated channel c stays close to colour c)."""
    pixels = np.asarray(images, np.float64).transpose(1, 0, 2, 3).reshape(3, -1)
    mean = pixels.mean(axis=1)
    cov = np.cov(pixels)
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 1e-6 * max(float(values.max()), 1e-12))
    color = vectors @ np.diag(np.sqrt(values)) @ vectors.T
    return mean.astype(np.float32), color.astype(np.float32)


def decorrelate(images: np.ndarray, mean: np.ndarray, color: np.ndarray) -> np.ndarray:
    """``color^-1 (x - mean)`` for images ``(n, 3, H, W)``."""
    inverse = np.linalg.inv(np.asarray(color, np.float64))
    centred = np.asarray(images, np.float64) - np.asarray(mean, np.float64)[None, :, None, None]
    return np.einsum("cd,ndhw->nchw", inverse, centred)


def estimate_spectrum(images: np.ndarray | Iterable[np.ndarray], *, source: str = "images") -> Spectrum:
    """The MACO magnitude spectrum and colour statistics of square images ``(n, 3, S, S)`` in [0, 1]."""
    images = np.asarray(images if isinstance(images, np.ndarray) else np.stack(list(images)), np.float32)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3] or len(images) == 0:
        raise ConceptsError(f"expected square RGB images (n, 3, S, S) to estimate a spectrum, got {images.shape}")
    mean, color = colour_statistics(images)
    z = decorrelate(images, mean, color)
    variance = z.var(axis=(2, 3)).mean(axis=0)  # mean within-image variance per decorrelated channel
    # a photo is not periodic: its FFT sees the jumps at its borders as edges along the axes (a bright cross in
    # the spectrum, horizontal and vertical streaks in the images made from it). A Hann window removes them.
    z = z - z.mean(axis=(2, 3), keepdims=True)
    window = np.hanning(images.shape[-1] + 2)[1:-1]
    magnitude = np.abs(np.fft.rfft2(z * np.outer(window, window), norm="ortho")).mean(axis=0)
    return Spectrum(magnitude=normalise_energy(magnitude, variance), mean=mean, color=color,
                    variance=variance.astype(np.float32), source=source, n_images=len(images))


def load_spectrum(path: str | os.PathLike, colours: Spectrum) -> Spectrum:
    """A user's magnitude spectrum (``.npy``: ``(3, N, N//2+1)`` or ``(N, N//2+1)``, rfft layout, any scale),
    with the colour statistics and energy of ``colours`` (the spectrum estimated on the class's images)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConceptsError(f"fviz.spectrum: file {path} not found (a .npy magnitude spectrum, or 'images')")
    try:
        magnitude = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConceptsError(f"fviz.spectrum: cannot read {path} as a .npy array ({exc})") from None
    magnitude = np.asarray(magnitude, np.float32)
    if magnitude.ndim == 2:
        magnitude = np.repeat(magnitude[None], 3, axis=0)
    n = magnitude.shape[-2] if magnitude.ndim == 3 else 0
    if magnitude.ndim != 3 or magnitude.shape[0] != 3 or magnitude.shape[2] != n // 2 + 1 or n < 4 \
            or not np.isfinite(magnitude).all() or (magnitude < 0).any():
        raise ConceptsError(f"fviz.spectrum: {path} holds an array of shape {magnitude.shape}; expected a "
                            "non-negative magnitude (3, N, N//2+1) or (N, N//2+1) in rfft layout")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Spectrum(magnitude=normalise_energy(magnitude, colours.variance), mean=colours.mean, color=colours.color,
                    variance=colours.variance, source=f"file:{path.resolve()}", n_images=colours.n_images,
                    extra={"file_sha256": digest})
