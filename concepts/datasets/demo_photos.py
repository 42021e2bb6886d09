"""The demo photos: real photos that ship with scikit-image, for the classes the bundled model recognises."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

# scikit-image sample photo -> the ImageNet class (WordNet id) the bundled model recognises in it
DEMO_PHOTOS = {
    "n02123159": "chelsea",  # tiger cat
    "n07920052": "coffee",  # espresso
    "n03773504": "rocket",  # missile
    "n04485082": "camera",  # tripod (the cameraman photo)
}


def demo_views(photo: np.ndarray, n_views: int, seed: int) -> list[Image.Image]:
    """``n_views`` deterministic random-resized crops (35-100% of the area) with horizontal flips."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(photo).convert("RGB")
    w, h = image.size
    views = [image]
    while len(views) < n_views:
        scale, ratio = rng.uniform(0.35, 1.0), np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(min(w, round(np.sqrt(scale * w * h * ratio))))
        ch = int(min(h, round(np.sqrt(scale * w * h / ratio))))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        view = image.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            view = view.transpose(Image.FLIP_LEFT_RIGHT)
        views.append(view)
    return views


def write_demo_images(folder: str | os.PathLike, n_views: int = 12, seed: int = 0) -> Path:
    """Write ``folder/<wnid>/view_XX.jpg`` for the demo classes; returns ``folder``."""
    import skimage.data

    folder = Path(folder)
    for k, (wnid, name) in enumerate(sorted(DEMO_PHOTOS.items())):
        target = folder / wnid
        target.mkdir(parents=True, exist_ok=True)
        for i, view in enumerate(demo_views(getattr(skimage.data, name)(), n_views, seed + k)):
            path = target / f"{name}_{i:02d}.jpg"
            if not path.exists():
                view.save(path, quality=92)
    return folder
