"""A fabricated run for the fviz tests: a tiny timm-like CNN, real image files, activations and an NMF bank."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from concepts.schema import stage_path
from fake_artefacts import write_concepts, write_patches_activations

D, SIZE, CLASS_INDEX = 12, 32, 1


class SmallNet(torch.nn.Module):
    """forward_features: two convolutions with ReLU ((B, D, 8, 8) >= 0 for 32-pixel inputs); forward_head: mean
    pool, linear. Weights drawn from a seeded generator."""

    def __init__(self, d: int = D, n_classes: int = 4, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(16, d, 3, stride=2, padding=1)
        self.classifier = torch.nn.Linear(d, n_classes)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=gen) * 0.4

    def forward_features(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))

    def forward_head(self, a):
        return self.classifier(a.mean(dim=(2, 3)))

    def get_classifier(self):
        return self.classifier

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def make_split(seed: int = 0):
    from concepts.models.preprocessing import Preprocessing
    from concepts.models.split import ModelSplit

    split = ModelSplit(SmallNet(seed=seed), input_size=SIZE)
    split.preprocessing = Preprocessing(input_size=SIZE, interpolation="bilinear", crop_pct=1.0,
                                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return split


def photos(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` smooth random colour photos (PNG) of 40 x 48 pixels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        noise = rng.random((10, 12, 3))
        image = Image.fromarray((noise * 255).astype(np.uint8)).resize((48, 40), Image.BICUBIC)
        path = folder / f"p{i}.png"
        image.save(path)
        paths.append(str(path))
    return paths


def fabricate(run: Path, class_id: str, split, *, n_images: int = 6, r: int = 4, seed: int = 0):
    """Activations of real photos through ``split`` (patches mode) and an NMF bank fitted on them."""
    from concepts.factorize import make_estimator
    from concepts.models.preprocessing import Preprocessing  # noqa: F401

    paths = photos(run / "photos" / class_id, n_images, seed)
    prep = split.preprocessing
    from concepts.datasets.images import load_image

    x = torch.stack([prep.normalize(prep.to_tensor(load_image(p)[0])) for p in paths])
    with torch.no_grad():
        maps = split.positions(split.g(x)).numpy()
    write_patches_activations(run, class_id, maps.astype(np.float32), class_index=CLASS_INDEX, image_size=SIZE,
                              paths=paths, class_name=class_id.upper(), model="small", weights="random",
                              weights_sha256="0" * 64, config_hash=f"fake-{class_id}",
                              preprocessing=prep.to_dict())
    rows = maps.reshape(-1, maps.shape[-1])
    nmf = make_estimator("nmf", r, device="cpu", random_state=seed).fit(rows)
    write_concepts(run, class_id, nmf.components_, nmf.transform(rows),
                   params=nmf.get_params() | {"device": None}, config_hash=f"c-{class_id}-{seed}")
    return nmf


def adopt(run: Path, class_id: str, split):
    from concepts.models import ModelCache

    models = ModelCache("cpu")
    with h5py.File(stage_path(run, "extract", class_id), "r") as handle:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()}
    models.adopt(split, attrs)
    return models
