#!/usr/bin/env python3
"""Recursive sub-concepts on real photos: what the sub-concepts of each class's top concept are, the reconstruction
error of the parent's rows before and after the split, and the time the recursive step adds.

    python benchmarks/recursive_real.py [--images ../shared/data/imagenette/val50] [--classes n01440764,n03394916]
        [--out docs/evaluation/recursive] [--sub-layer blocks.5.0.bn1] [--threads 2]

One run folder (a temporary one): `extract_run` caches the default cut (features) and ``--sub-layer`` in one pass
(crops mode, CRAFT's 64 px crops), `factorize_run` fits each class's bank (r = 10), then the recursive step is
added twice: at the same layer and at ``--sub-layer`` (sub-concepts = 4, rows at or above the 90th percentile),
each time reusing the bank (``--overwrite`` keeps a bank made with the same settings). `importance_run` scores the
sub-concepts (Sobol in closed form and gradient x input at the features layer; gradient x input through the network
at the sub-layer). For each class it prints the figures and writes a crop sheet per setting: one line per
sub-concept of the top concept (its 8 strongest crops), under a line of the parent's own 8 strongest crops.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from concepts.datasets import load_image  # noqa: E402
from concepts.extract import extract_run  # noqa: E402
from concepts.factorize import factorize_run  # noqa: E402
from concepts.importance import importance_run  # noqa: E402
from concepts.models.preprocessing import Preprocessing  # noqa: E402
from concepts.schema import RunFolder  # noqa: E402


def _grown(box, grow: float, limit: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * grow / 2
    return (int(max(0, cx - half)), int(max(0, cy - half)), int(min(limit, cx + half)), int(min(limit, cy + half)))


def crop_sheet(folder: RunFolder, class_id: str, lines: list[tuple[str, np.ndarray, np.ndarray]], path: Path,
               k: int = 8, size: int = 96, grow: float = 1.0) -> None:
    """A PNG: one line per (label, rows, scores), the ``k`` highest-scoring rows' crops, left to right (``grow``:
    each box enlarged around its centre, for context)."""
    from PIL import Image, ImageDraw

    with folder.activations(class_id) as cache:
        prep = Preprocessing(**{**cache.attrs["preprocessing"], "mean": tuple(cache.attrs["preprocessing"]["mean"]),
                                "std": tuple(cache.attrs["preprocessing"]["std"])})
        paths, row_image, row_box = cache.images["path"], cache.row_image, cache.row_box
    label_w = 150
    sheet = Image.new("RGB", (label_w + k * (size + 4), len(lines) * (size + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    views: dict[int, Image.Image] = {}
    for line, (label, rows, scores) in enumerate(lines):
        draw.text((4, line * (size + 4) + size // 2 - 6), label, fill="black")
        for j, row in enumerate(rows[np.argsort(-scores, kind="stable")][:k]):
            image = int(row_image[row])
            if image not in views:
                views[image] = prep.view(load_image(paths[image])[0])
            crop = views[image].crop(_grown(row_box[row], grow, prep.input_size)).resize((size, size))
            sheet.paste(crop, (label_w + j * (size + 4), line * (size + 4)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def report_class(folder: RunFolder, class_id: str, tag: str, out: Path, method: str) -> None:
    tree = folder.concept_tree(class_id)
    record = folder.concepts(class_id)
    top = max(tree.roots(), key=lambda n: n.share.get(method, -1))
    kids = tree.children(top.node)
    print(f"  [{tag}] top concept #{top.node} ({method} share {top.share[method]:.1%}); {len(tree) - tree.n_concepts}"
          f" sub-concepts in the tree (bound {tree.bound}), {tree.attrs.get('seconds', 0):.2f} s")
    if not kids:
        print("    not split")
        return
    print(f"    its rows: {len(kids[0].rows)} (coefficient >= {kids[0].threshold:.3g}); relative error of those rows "
          f"with the class bank (r = {tree.n_concepts}) {kids[0].rel_error_before:.3f}, with its "
          f"{len(kids)} sub-concepts {kids[0].rel_error_after:.3f}")
    for kid in kids:
        shares = ", ".join(f"{m} {kid.share_of_parent[m]:.1%}" for m in kid.share_of_parent)
        print(f"    sub-concept #{kid.node} (index {kid.index}): share of parent {shares}; argmax of "
              f"{np.mean(np.stack([k.coefficients for k in kids], 1).argmax(1) == kid.index):.0%} of the rows")
    lines = [(f"concept #{top.node}", np.arange(len(record.coefficients)), record.coefficients[:, top.node])]
    lines += [(f"  sub #{kid.node} ({kid.share_of_parent.get(method, float('nan')):.0%})", kid.rows,
               kid.coefficients) for kid in kids]
    crop_sheet(folder, class_id, lines, out / f"{class_id}_{tag}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = next((p / "shared" for p in ROOT.parents if (p / "shared" / "data").is_dir()), ROOT.parent / "shared")
    parser.add_argument("--images", default=str(shared / "data" / "imagenette" / "val50"))
    parser.add_argument("--classes", default="n01440764,n03394916")
    parser.add_argument("--max-images", type=int, default=50)
    parser.add_argument("--sub-layer", default="blocks.5.0.bn1")
    parser.add_argument("--out", default=str(ROOT / "docs" / "evaluation" / "recursive"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not Path(args.images).is_dir():
        print(f"skipped: image folder {args.images} not found (the shared reference photos)")
        return 0
    classes, out = args.classes.split(","), Path(args.out)
    run = Path(tempfile.mkdtemp(prefix="recursive-real-"))
    common = dict(classes=classes, progress=False, threads=args.threads)
    try:
        t = time.perf_counter()
        extract_run(args.images, run, layer=["features", args.sub_layer], max_images=args.max_images, **common)
        print(f"extract (features + {args.sub_layer}, one pass): {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        factorize_run(run, n_concepts=10, **common)
        print(f"factorize (r = 10, no sub-concepts): {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        importance_run(run, methods=["sobol", "gradient"], **common)
        print(f"importance (sobol, gradient; no sub-concepts): {time.perf_counter() - t:.1f} s")
        for tag, sub_layer, methods in (("same-layer", None, ["sobol", "gradient"]),
                                        ("sub-layer", args.sub_layer, ["gradient"])):
            t = time.perf_counter()
            factorize_run(run, n_concepts=10, recursive=True, sub_concepts=4, threshold_percentile=90,
                          sub_layer=sub_layer, overwrite=True, **common)
            print(f"\nfactorize --recursive ({tag}, bank reused): {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            importance_run(run, methods=methods, overwrite=True, **common)
            print(f"importance ({', '.join(methods)}, with the sub-concepts): {time.perf_counter() - t:.1f} s")
            folder = RunFolder(run)
            for class_id in classes:
                print(f" {class_id}:")
                report_class(folder, class_id, tag, out, methods[0])
    finally:
        shutil.rmtree(run, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
