"""Rows of the activation matrix: CRAFT crops or feature-map positions (patches)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..settings.extract import MODES  # noqa: F401 (the modes are defined with the settings)


def crop_stride(patch_size: int) -> int:
    """CRAFT's stride: 0.8 x the patch size."""
    return max(1, int(patch_size * 0.8))


def crop_boxes(input_size: int, patch_size: int, stride: int | None = None) -> torch.Tensor:
    """Boxes (n, 4) as x0, y0, x1, y1 in model-input pixels of the square crop grid, row-major."""
    if not 1 <= patch_size <= input_size:
        from ..errors import ConceptsError

        raise ConceptsError(f"--patch-size {patch_size} must be between 1 and the input size {input_size}")
    stride = stride or crop_stride(patch_size)
    starts = list(range(0, input_size - patch_size + 1, stride))
    boxes = [(x, y, x + patch_size, y + patch_size) for y in starts for x in starts]
    return torch.tensor(boxes, dtype=torch.int32)


def crop_positions(input_size: int, patch_size: int, stride: int | None = None) -> torch.Tensor:
    stride = stride or crop_stride(patch_size)
    n = len(range(0, input_size - patch_size + 1, stride))
    return torch.tensor([(i, j) for i in range(n) for j in range(n)], dtype=torch.int32)


def make_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut every box from every image and resize it to ``size``: (B * n_boxes, C, size, size), image-major."""
    b, c = images.shape[:2]
    p = int(boxes[0, 2] - boxes[0, 0])
    stride = int(boxes[1, 0] - boxes[0, 0]) if len(boxes) > 1 else p
    if len(boxes) == 1:
        patches = images[:, :, int(boxes[0, 1]):int(boxes[0, 3]), int(boxes[0, 0]):int(boxes[0, 2])][:, None]
    else:
        n = int(round(len(boxes) ** 0.5))
        patches = images.unfold(2, p, stride).unfold(3, p, stride)[:, :, :n, :n]  # B, C, n, n, p, p
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(b, n * n, c, p, p)
    patches = patches.reshape(-1, c, p, p)
    if p != size:
        patches = F.interpolate(patches, size=(size, size), mode="bilinear", align_corners=False)
    return patches


def position_boxes(grid: tuple[int, int], input_size: int) -> torch.Tensor:
    """Box (x0, y0, x1, y1) in input pixels of every feature-map position, row-major."""
    h, w = grid
    boxes = []
    for i in range(h):
        for j in range(w):
            boxes.append((round(j * input_size / w), round(i * input_size / h),
                          round((j + 1) * input_size / w), round((i + 1) * input_size / h)))
    return torch.tensor(boxes, dtype=torch.int32)
