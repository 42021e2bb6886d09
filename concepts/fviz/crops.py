"""Square crops of a batch of images, resampled to the model's input size in one ``grid_sample`` call.

A box is ``(scale, cx, cy)`` in fractions of the image side: a square of side ``scale`` centred at ``(cx, cy)``.
The images are periodic (they are made by an inverse FFT), so a crop that crosses an edge wraps around: every
pixel is seen equally often. (Crops kept inside the image leave its edges and corners rarely seen, and the
optimisation then parks the large low-frequency blobs that the fixed spectrum imposes there: bright corners.)
All crops of all images are sampled at once: the crops of image k are one tall sampling grid of image k, so the
images are never copied per crop.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_boxes(generators: list[torch.Generator], n_crops: int, low: float, high: float,
                 device) -> torch.Tensor:
    """(K, n_crops, 3) boxes, image k's from ``generators[k]``: side uniform in [low, high], centre uniform."""
    out = []
    for g in generators:
        u = torch.rand(n_crops, 3, generator=g, device=g.device)
        u[:, 0] = low + (high - low) * u[:, 0]
        out.append(u)
    return torch.stack(out).to(device)


def grid_boxes(scale: float, n_images: int, device=None) -> torch.Tensor:
    """(K, m*m, 3) deterministic boxes: an m x m grid of crops of side ``scale`` tiling the (periodic) image
    (m = ceil(1 / scale)), the same for every image."""
    m = max(1, math.ceil(1.0 / scale - 1e-9))
    centres = (torch.arange(m, dtype=torch.float32) + 0.5) / m
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    boxes = torch.stack([torch.full((m * m,), float(scale)), cx.flatten(), cy.flatten()], dim=1)
    return boxes[None].expand(n_images, -1, -1).to(device)


def crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crops (K * C, 3, size, size) of images (K, 3, N, N) at boxes (K, C, 3), bilinear; crop c of image k is row
    ``k * C + c``."""
    k, c, _ = boxes.shape
    n = images.shape[-1]
    steps = (torch.arange(size, device=images.device, dtype=images.dtype) + 0.5) / size - 0.5  # in box sides
    boxes = boxes.to(images.dtype)

    def normalised(centre: torch.Tensor) -> torch.Tensor:
        fraction = torch.remainder(centre + boxes[..., 0:1] * steps, 1.0)  # (K, C, size), wrapped
        # pixel coordinate in the image padded by one pixel on each side, then grid_sample's [-1, 1] units
        return 2 * (fraction * n + 1.0) / (n + 2) - 1

    gx, gy = normalised(boxes[..., 1:2]), normalised(boxes[..., 2:3])
    grid = torch.stack(torch.broadcast_tensors(gx[:, :, None, :], gy[:, :, :, None]), dim=-1)  # (K, C, s, s, 2)
    padded = F.pad(images, (1, 1, 1, 1), mode="circular")
    out = F.grid_sample(padded, grid.reshape(k, c * size, size, 2), mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.reshape(k, 3, c, size, size).transpose(1, 2).reshape(k * c, 3, size, size)
