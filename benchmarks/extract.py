#!/usr/bin/env python3
"""Throughput of `concepts extract` against the bare forward pass of the same model, same images, same device.

    python benchmarks/extract.py [--images ../shared/data/imagenette/val50] [--classes n01440764,n02102040]
                                 [--max-images 50] [--model NAME --random-init] [--precision bf16]

For each sampling mode it prints images/s of
  * bare:    g on the preprocessed input tensors already in memory (the full image, plus its crops in crops mode),
  * extract: `concepts.extract_run` end to end (JPEG decoding in DataLoader workers, crops, the HDF5 writes),
and their ratio (target on a CPU: >= 0.8). Both run in this process, one after the other, with the same threads.

With ``--layers A,B`` it then times, per mode, `extract_run` at the first layer alone against all the listed layers
in one forward pass (same loaded model, runs alternated ``--repeats`` times) and prints the wall-time ratio of the
several-layer run to the one-layer run (target <= 1.3 for two layers).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import SHARED  # noqa: E402  (found from a worktree too)

from concepts.datasets import discover, load_image  # noqa: E402
from concepts.extract import extract_run  # noqa: E402
from concepts.extract.sampling import crop_boxes, make_crops  # noqa: E402
from concepts.models import load_split  # noqa: E402
from concepts.runtime import autocast_dtype  # noqa: E402


def bare_forward(split, tensors: list[torch.Tensor], mode: str, batch: int, precision: str | None) -> float:
    device = split.device
    boxes = crop_boxes(split.input_size, 64)
    dtype = autocast_dtype(precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        for s in range(0, len(tensors), batch):
            x = torch.stack(tensors[s:s + batch]).to(device)
            split.g(x)
            if mode == "crops":
                crops = make_crops(x, boxes, split.input_size)
                for c in range(0, len(crops), max(batch, 16)):
                    split.g(crops[c:c + max(batch, 16)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(tensors) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(SHARED / "data" / "imagenette" / "val50"))
    parser.add_argument("--classes", default="n01440764,n02102040")
    parser.add_argument("--max-images", type=int, default=50)
    parser.add_argument("--model", default=None)
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--modes", default="patches,crops")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--layers", default=None, help="A,B: also time A alone against A and B in one pass")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.images).is_dir():
        print(f"skipped: image folder {args.images} not found (the shared reference photos)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    classes = args.classes.split(",")
    split, info = load_split(args.model, layer=None, device=args.device, pretrained=not args.random_init)
    prep = split.preprocessing
    files = [f for c in discover(args.images, classes, args.max_images) for f in c.files]
    tensors = [prep.normalize(prep.to_tensor(load_image(f)[0])) for f in files]
    print(f"model {info['model']} ({info['weights']}), device {split.device}, threads {torch.get_num_threads()}, "
          f"{len(files)} images of {len(classes)} classes, precision {args.precision or 'fp32'}")
    bare_forward(split, tensors[: args.batch_size], "patches", args.batch_size, args.precision)  # warm-up
    print(f"{'mode':8s} {'bare img/s':>11s} {'extract img/s':>14s} {'ratio':>6s}")
    for mode in args.modes.split(","):
        bare = bare_forward(split, tensors, mode, args.batch_size, args.precision)
        out = Path(tempfile.mkdtemp(prefix="bench-extract-"))
        try:
            start = time.perf_counter()
            extract_run(args.images, out, classes=classes, max_images=args.max_images, mode=mode,
                        batch_size=args.batch_size, workers=args.workers, precision=args.precision,
                        progress=False, split=split, info=info)
            ours = len(files) / (time.perf_counter() - start)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(f"{mode:8s} {bare:11.1f} {ours:14.1f} {ours / bare:6.2f}")
    if args.layers:
        layer_ratio(args, split, info, classes)
    return 0


def _timed_extract(args, split, info, classes, mode: str, layers: list[str]) -> float:
    out = Path(tempfile.mkdtemp(prefix="bench-layers-"))
    try:
        start = time.perf_counter()
        extract_run(args.images, out, classes=classes, max_images=args.max_images, mode=mode, layer=layers,
                    batch_size=args.batch_size, workers=args.workers, precision=args.precision, progress=False,
                    split=split, info=info)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)


def layer_ratio(args, split, info, classes) -> None:
    """Wall time of all ``--layers`` in one pass over the first layer alone, alternated ``--repeats`` times."""
    from concepts.models import layer_splits

    layers = args.layers.split(",")
    first, first_info = layer_splits(split, info, layers[:1])[0]
    print(f"\nlayers {' + '.join(layers)} in one pass against {layers[0]} alone ({args.repeats} repeats, "
          "alternated; wall seconds)")
    print(f"{'mode':8s} {'one layer s':>12s} {'all layers s':>13s} {'ratio':>6s} {'ratio range':>12s}")
    for mode in args.modes.split(","):
        one, many = [], []
        for _ in range(args.repeats):
            one.append(_timed_extract(args, first, first_info, classes, mode, layers[:1]))
            many.append(_timed_extract(args, first, first_info, classes, mode, layers))
        ratios = [m / o for m, o in zip(many, one)]
        print(f"{mode:8s} {min(one):12.2f} {min(many):13.2f} {min(many) / min(one):6.2f} "
              f"{min(ratios):5.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    sys.exit(main())
