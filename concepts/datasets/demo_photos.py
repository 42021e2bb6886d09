"""The demo photos: real photos that ship with installed packages (nothing is downloaded), for the ImageNet classes
the bundled EfficientNet-Lite0 recognises in them (its top-1 on each photo, checked when this list was made).

What an offline demo can and cannot show: every permissively licensed colour photo we found in the installed
packages is a single photo of its class (scikit-image's data folder, scikit-learn's ``datasets/images``), so a
demo class is **one photo seen as several views** (the photo and deterministic crops of it), not several distinct
photos. Its concepts are therefore parts of that photo (for the tripod: legs, camera, coat, grass), and its
"least sure" and "wrong" images are the views that lose the parts the class needs; it shows how the atlas reads,
not what a model has learned about a class. For that, run ``concepts demo --images DIR`` on class folders of your
own photos. ImageNet photos are not shipped (their licence is non-commercial).

Licences (from the packages' own documentation): scikit-image ``chelsea``, ``coffee``, ``camera``: CC0 (by
Stefan van der Walt, Rachel Michetti, Lav Varshney); ``rocket``: public domain (SpaceX); scikit-learn
``china.jpg`` and ``flower.jpg``: CC BY 2.0 (Flickr users danielbuechele and vultilion; see
``sklearn/datasets/images/README.txt``), which asks for this attribution.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class DemoPhoto:
    source: str  # skimage | sklearn
    name: str  # skimage.data function, or file name in sklearn/datasets/images
    class_name: str
    licence: str
    top1: float  # the bundled model's softmax probability of the class on the photo (checked)


# WordNet id of the ImageNet class -> the photo the bundled model recognises it in
DEMO_PHOTOS: dict[str, DemoPhoto] = {
    "n02123159": DemoPhoto("skimage", "chelsea", "tiger cat", "CC0 (Stefan van der Walt)", 0.39),
    "n07920052": DemoPhoto("skimage", "coffee", "espresso", "CC0 (Rachel Michetti)", 0.95),
    "n03773504": DemoPhoto("skimage", "rocket", "missile", "public domain (SpaceX)", 0.27),
    "n04485082": DemoPhoto("skimage", "camera", "tripod", "CC0 (Lav Varshney)", 0.94),
    "n03877845": DemoPhoto("sklearn", "china.jpg", "palace", "CC BY 2.0 (danielbuechele, Flickr)", 0.30),
    "n11939491": DemoPhoto("sklearn", "flower.jpg", "daisy", "CC BY 2.0 (vultilion, Flickr)", 0.32),
}


def demo_photo(photo: DemoPhoto) -> np.ndarray:
    """The photo as an (H, W, 3) or (H, W) uint8 array, read from the package that ships it."""
    if photo.source == "skimage":
        import skimage.data

        return getattr(skimage.data, photo.name)()
    if photo.source == "sklearn":
        import sklearn

        with Image.open(Path(sklearn.__file__).parent / "datasets" / "images" / photo.name) as picture:
            return np.asarray(picture.convert("RGB"))
    raise ValueError(f"unknown demo photo source {photo.source!r}")


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
    """Write ``folder/<wnid>/<photo>_XX.jpg`` (views of each demo photo) and ``folder/LICENCES.md``."""
    folder = Path(folder)
    for k, (wnid, photo) in enumerate(sorted(DEMO_PHOTOS.items())):
        target = folder / wnid
        target.mkdir(parents=True, exist_ok=True)
        stem = Path(photo.name).stem
        for i, view in enumerate(demo_views(demo_photo(photo), n_views, seed + k)):
            path = target / f"{stem}_{i:02d}.jpg"
            if not path.exists():
                view.save(path, quality=92)
    lines = ["# Demo photos", "", "Views (crops) of one photo per class, from installed packages:", ""]
    lines += [f"- `{wnid}` ({p.class_name}): {p.source} `{p.name}`, {p.licence}" for wnid, p in
              sorted(DEMO_PHOTOS.items())]
    (folder / "LICENCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
