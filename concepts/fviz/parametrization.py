"""MACO's image parametrisation: a batch of images made from phases only, under one fixed magnitude spectrum.

``image = clip(mean + color @ irfft2(magnitude * exp(i * phase)), 0, 1)``. The phase is standardised per image
(as in the reference implementations: the learning rate then means the same for every image) and made consistent
with a real image: on the rfft columns that hold both a frequency and its conjugate (0 and N/2) the phase is
antisymmetric, and on the self-conjugate entries it is zero. So the spectrum of the image before clipping, in the
decorrelated colours, has exactly the fixed magnitude (tested). The images of a batch are independent: every
operation is per image, so optimising K images together is K separate optimisations in one pass.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .spectrum import Spectrum, hermitian_columns


class FourierImages(torch.nn.Module):
    """``K`` images of side ``spectrum.size`` whose phases are the parameters (``phase``: (K, 3, N, N//2+1))."""

    def __init__(self, spectrum: Spectrum, phase: torch.Tensor):
        super().__init__()
        n = spectrum.size
        if tuple(phase.shape[1:]) != (3, n, n // 2 + 1):
            raise ValueError(f"phase of shape {tuple(phase.shape)} for a spectrum of size {n}")
        device = phase.device
        self.size = n
        self.phase = torch.nn.Parameter(phase)
        self.register_buffer("magnitude", torch.as_tensor(spectrum.magnitude, dtype=torch.float32, device=device))
        self.register_buffer("mean", torch.as_tensor(spectrum.mean, dtype=torch.float32, device=device))
        self.register_buffer("color", torch.as_tensor(spectrum.color, dtype=torch.float32, device=device))
        self.register_buffer("negative", torch.as_tensor((-np.arange(n)) % n, dtype=torch.long, device=device))
        self.columns = hermitian_columns(n)

    @staticmethod
    def random_phase(n_images: int, size: int, generators: list[torch.Generator], device) -> torch.Tensor:
        """Standard normal phases, image k drawn from ``generators[k]`` (so an image does not depend on its batch)."""
        shape = (3, size, size // 2 + 1)
        return torch.stack([(torch.rand(shape, generator=g, device=g.device) * 2 - 1) * math.pi
                            for g in generators]).to(device)

    def effective_phase(self) -> torch.Tensor:
        """The phase the images are made of: standardised per image, Hermitian on columns 0 and N/2."""
        p = self.phase.clone()
        for col in self.columns:
            column = p[..., col]
            p[..., col] = 0.5 * (column - column[..., self.negative])
        return p

    def decorrelated(self) -> torch.Tensor:
        """``irfft2(magnitude * exp(i * phase))``: (K, 3, N, N), the images in decorrelated colours."""
        phase = self.effective_phase()
        spectrum = torch.polar(self.magnitude.expand_as(phase), phase)
        return torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")

    def unclipped(self) -> torch.Tensor:
        """The images before the final clipping: ``mean + color @ decorrelated`` (K, 3, N, N)."""
        z = self.decorrelated()
        return torch.einsum("cd,kdhw->kchw", self.color, z) + self.mean.view(1, 3, 1, 1)

    def forward(self) -> torch.Tensor:
        """The images in [0, 1]: (K, 3, N, N)."""
        return self.unclipped().clamp(0.0, 1.0)
