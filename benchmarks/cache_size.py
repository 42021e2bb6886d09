#!/usr/bin/env python3
"""The run folder's size per image, measured per model and mode, and what it comes to at ImageNet scale.

For each model (the bundled EfficientNet-Lite0, ResNet-50 and ViT-Tiny with random weights: the sizes depend on the
architecture only) and each mode (crops, patches), `concepts` extracts, factorizes and ranks --images photos of one
class; the script reads the bytes HDF5 allocated to each dataset (``get_storage_size``) and prints them per image:
the feature maps (per mapped image), the crop rows (per image with rows), the pooled row, the image and row tables,
and the concepts and importance files. It then computes the cache of an ImageNet-scale run (--classes x
--per-class, default 1000 x 1300) from those measured sizes: with every map kept, and with the bounded cache
``extract.map_images = K`` (maps and crop rows of K images per class, a pooled row for every image).

    python benchmarks/cache_size.py
    python benchmarks/cache_size.py --models resnet50 --modes patches --map-images 64,100,200
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py

from common import VAL50, load  # noqa: E402 (benchmarks/common.py)

MODELS = {"lite0": (None, True), "resnet50": ("resnet50", False), "vit_tiny": ("vit_tiny_patch16_224", False)}
GB = 1e9


def storage(path: Path) -> dict[str, int]:
    """Allocated bytes of every dataset of an HDF5 file, by name, plus 'file' (the file's size on disk). A string
    dataset also counts its strings' bytes (kept in the file's heap, not in the dataset's storage)."""
    sizes: dict[str, int] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            sizes[name] = int(obj.id.get_storage_size())
            if h5py.check_string_dtype(obj.dtype) is not None:
                sizes[name] += sum(len(v) for v in obj.asstr()[()].tolist())

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    sizes["file"] = path.stat().st_size
    return sizes


def measure(model: str, mode: str, args, tmp: Path) -> dict[str, float]:
    """Bytes per mapped image, per image and per class (the rest of each file) of the three class files."""
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run

    name, pretrained = MODELS[model]
    run = tmp / f"{model}-{mode}"
    common = dict(classes=[args.wnid], max_images=args.images, mode=mode, progress=False, workers=0)
    extract_run(str(VAL50), str(run), model=name, pretrained=pretrained, **common)
    method = "semi_nmf" if model == "vit_tiny" else "nmf"
    factorize_run(run, method=method, n_concepts=args.concepts, progress=False)
    importance_run(run, progress=False)
    n = args.images
    act = storage(run / "activations" / f"{args.wnid}.h5")
    con = storage(run / "concepts" / f"{args.wnid}.h5")
    imp = storage(run / "importance" / f"{args.wnid}.h5")
    per = lambda sizes, names: sum(v for k, v in sizes.items() if k.startswith(names)) / n  # noqa: E731
    out = {
        # stored only for the mapped images (map_images): maps, crop rows, the rows' tables and coefficients
        "maps": per(act, ("maps", "prefix")), "rows": per(act, ("activations",)), "row_tables": per(act, ("rows/",)),
        "coefficients": per(con, ("coefficients",)),
        # stored for every image
        "pooled": per(act, ("pooled",)), "image_tables": per(act, ("images/",)),
        "image_coefficients": per(con, ("image_coefficients",)),
        "importance": per(imp, ("maps/", "images/", "sobol/per_image", "gradient/per_image", "occlusion/per_image",
                                "fidelity/sobol/mufidelity", "fidelity/gradient/mufidelity",
                                "fidelity/occlusion/mufidelity")),
    }
    per_image = {"activations": ("maps", "rows", "row_tables", "pooled", "image_tables"),
                 "concepts": ("coefficients", "image_coefficients"), "importance": ("importance",)}
    for stage, sizes in (("activations", act), ("concepts", con), ("importance", imp)):
        out[f"{stage}_file"] = sizes["file"] / n
        out[f"{stage}_class"] = sizes["file"] - n * sum(out[k] for k in per_image[stage])  # per class
    return out


MAPPED = ("maps", "rows", "row_tables", "coefficients")
EVERY = ("pooled", "image_tables", "image_coefficients", "importance")
CLASS = ("activations_class", "concepts_class", "importance_class")


def imagenet(size: dict[str, float], classes: int, per_class: int, k: int | None) -> dict[str, float]:
    """Bytes of the run folder at ImageNet scale from the measured sizes; ``k``: map_images (None: all)."""
    mapped = per_class if k is None else min(k, per_class)
    parts = {key: classes * mapped * size[key] for key in MAPPED}
    parts.update({key: classes * per_class * size[key] for key in EVERY})
    parts["per-class rest"] = classes * sum(max(size[key], 0.0) for key in CLASS)
    return parts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="lite0,resnet50,vit_tiny")
    p.add_argument("--modes", default="patches,crops")
    p.add_argument("--wnid", default="n01440764")
    p.add_argument("--images", type=int, default=16, help="photos measured per configuration")
    p.add_argument("--concepts", type=int, default=10)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=1300)
    p.add_argument("--map-images", default="64,100", help="values of extract.map_images for the bounded cache")
    p.add_argument("--budget-gb", type=float, default=64.0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="concepts-cache-size-"))
    ks = [int(k) for k in args.map_images.split(",")]
    print(f"{args.images} photos per configuration, r = {args.concepts}, float16 storage, no compression; {load()}")
    print(f"\nper image, kB: maps (+prefix) | crop rows | row tables | row coefficients  [the mapped images] | "
          f"pooled row | image table | image coefficients | importance  [every image] | per class, kB")
    sizes = {}
    for model in args.models.split(","):
        for mode in args.modes.split(","):
            s = measure(model, mode, args, tmp)
            sizes[(model, mode)] = s
            cells = " ".join(f"{s[k] / 1e3:8.2f}" for k in (*MAPPED, *EVERY))
            rest = sum(s[k] for k in CLASS) / 1e3
            print(f"{model:>9} {mode:>8} {cells} | {rest:8.1f}   (files: {s['activations_file'] / 1e3:.1f} + "
                  f"{s['concepts_file'] / 1e3:.1f} + {s['importance_file'] / 1e3:.1f} kB per image at "
                  f"{args.images} images)", flush=True)
    print(f"\nImageNet scale: {args.classes} classes x {args.per_class} images, from the sizes above "
          f"(budget {args.budget_gb:.0f} GB)")
    for (model, mode), s in sizes.items():
        for k in [None, *ks]:
            parts = imagenet(s, args.classes, args.per_class, k)
            total = sum(parts.values())
            label = "all maps" if k is None else f"map_images={k}"
            detail = ", ".join(f"{key} {value / GB:.1f}" for key, value in parts.items())
            verdict = "within" if total <= args.budget_gb * GB else "over"
            print(f"  {model:>9} {mode:>8} {label:>15}: {total / GB:7.1f} GB ({detail}) - {verdict} the budget")


if __name__ == "__main__":
    main()
