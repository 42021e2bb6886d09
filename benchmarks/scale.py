#!/usr/bin/env python3
"""How `concepts run` scales with the number of classes: seconds per class and peak memory.

Pseudo-classes are made by splitting the shared Imagenette photos (val50 + extra, ~4300) into
groups of --per-class photos, as a temp folder of symlinks; a labels file maps each
pseudo-class to the ImageNet index of the photos' true class. For each size (default 10, 50
and 100 classes) `concepts run` runs in a fresh child process (`python -m concepts run`), and
the script prints the wall time, seconds per class and the peak resident memory of the run
(max of the driver and its tasks, from RUN/pipeline/last_run.json). Cost should grow linearly
(flat seconds per class) and peak memory stay flat.

On a GPU (--device cuda) it also measures the bare forward pass of the model (g then h) on the
same photos, preloaded as tensors, and prints the images/s of the whole pipeline against it.

    python benchmarks/scale.py --sizes 1000 --per-class 4     # the 1000-class run (target: < 15 min on 2 cores)
    python benchmarks/scale.py                                 # CPU, 10/50/100 classes x 8 photos
    python benchmarks/scale.py --device cuda --per-class 40    # GPU (untested: no GPU was lent to the session)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, ROOT, load  # noqa: E402 (benchmarks/common.py)


def pseudo_classes(tmp: Path, n_classes: int, per_class: int) -> tuple[Path, Path]:
    """IMAGES/<pseudo>/ symlink folders and a labels CSV; photos are dealt round-robin by true class."""
    from timm.data import ImageNetInfo

    names = ImageNetInfo().label_names()
    pools = {}
    for split in ("val50", "extra"):
        for folder in sorted((DATA / split).iterdir()):
            if folder.is_dir():
                pools.setdefault(folder.name, []).extend(sorted(p for p in folder.iterdir() if p.is_file()))
    wnids = sorted(pools)
    capacity = sum(len(v) // per_class for v in pools.values())
    if n_classes > capacity:
        raise SystemExit(f"only {capacity} pseudo-classes of {per_class} photos can be made")
    images = tmp / f"images-{n_classes}"
    labels = tmp / f"labels-{n_classes}.csv"
    rows = []
    order, turn = [], {w: 0 for w in wnids}  # round-robin over the true classes that still have photos left
    while len(order) < n_classes:
        for wnid in wnids:
            if turn[wnid] < len(pools[wnid]) // per_class and len(order) < n_classes:
                order.append((wnid, turn[wnid]))
                turn[wnid] += 1
    for wnid, round_ in order:
        files = pools[wnid][round_ * per_class:(round_ + 1) * per_class]
        class_id = f"{wnid}_{round_:03d}"
        folder = images / class_id
        folder.mkdir(parents=True)
        for path in files:
            (folder / path.name).symlink_to(path.resolve())
        rows.append(f"{class_id},{names.index(wnid)}")
    labels.write_text("\n".join(rows) + "\n")
    return images, labels


def bare_forward(images: Path, device: str, batch_size: int, precision: str) -> float:
    """images/s of g then h on preloaded tensors (no decoding), like the pipeline's forward pass."""
    import torch

    from concepts.datasets import load_image
    from concepts.models import load_split
    from concepts.runtime import autocast_dtype

    split, _ = load_split(None, device=device)
    prep = split.preprocessing
    files = sorted(p for d in images.iterdir() for p in d.iterdir())[:512]
    tensors = []
    for path in files:
        image, _ = load_image(path)
        tensors.append(prep.normalize(prep.to_tensor(image)))
    x = torch.stack(tensors).to(device)
    dtype = autocast_dtype(precision)

    def once() -> None:
        with torch.inference_mode(), torch.autocast(device_type=torch.device(device).type, dtype=dtype or
                                                    torch.float32, enabled=dtype is not None):
            for i in range(0, len(x), batch_size):
                split.h(split.g(x[i:i + batch_size]))
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    once()
    t0 = time.perf_counter()
    once()
    return len(x) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,50,100", help="numbers of classes")
    p.add_argument("--per-class", type=int, default=8, help="photos per pseudo-class")
    p.add_argument("--mode", default="crops", help="crops or patches (patches: one forward pass per photo)")
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--concepts", type=int, default=10)
    p.add_argument("--designs", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: concepts' own policy)")
    p.add_argument("--classes-per-task", type=int, default=10)
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default: concepts' own, one process on a CPU)")
    p.add_argument("--atlas", action="store_true", help="also build the atlas in the reduce step")
    p.add_argument("--no-export", action="store_true", help="no exports in the reduce step")
    p.add_argument("--map-images", type=int, default=None, help="extract.map_images (bounded cache)")
    p.add_argument("--keep", help="keep the temp folder here")
    args = p.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"shared photos not found at {DATA}")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="concepts-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{args.per_class} photos per class, {args.mode} (patch {args.patch_size}), r = {args.concepts}, {args.designs} designs, device {args.device}, "
          f"{args.threads or 'default'} threads, {args.workers or 'default'} workers, {args.classes_per_task} classes per task; {load()}", flush=True)
    print(f"{'classes':>8} {'photos':>7} {'wall s':>8} {'s/class':>8} {'peak MiB':>9} {'photos/s':>9}", flush=True)
    rows = []
    for n in sizes:
        images, labels = pseudo_classes(tmp, n, args.per_class)
        run = tmp / f"run-{n}"
        cmd = [sys.executable, "-m", "concepts", "run", "--out", str(run), "--images", str(images),
               "--labels", str(labels), "--mode", args.mode, "--patch-size", str(args.patch_size), "--concepts", str(args.concepts), "--designs", str(args.designs),
               "--device", args.device, "--precision", args.precision,
               "--classes-per-task", str(args.classes_per_task), "--quiet"]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        if not args.atlas:
            cmd.append("--no-atlas")
        if args.no_export:
            cmd.append("--no-export")
        if args.map_images:
            cmd += ["--map-images", str(args.map_images)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"concepts run failed for {n} classes:\n{done.stderr[-3000:]}")
        last = json.loads((run / "pipeline" / "last_run.json").read_text())
        photos = n * args.per_class
        row = {"classes": n, "photos": photos, "wall_s": wall, "s_per_class": wall / n,
               "peak_rss_mb": last["peak_rss_mb"], "photos_per_s": photos / wall, "stages": last["seconds"]}
        rows.append(row)
        print(f"{n:>8} {photos:>7} {wall:>8.1f} {wall / n:>8.2f} {last['peak_rss_mb']:>9.0f} "
              f"{photos / wall:>9.1f}   ({load()})", flush=True)
        stages = ", ".join(f"{k} {v / n:.3f}" for k, v in last["seconds"].items())
        print(f"         s/class by stage: {stages}; model loads {last['load_s']:.1f} s in all", flush=True)
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        print(f"cost growth: {last['classes'] / first['classes']:.0f}x the classes took "
              f"{last['wall_s'] / first['wall_s']:.1f}x the time (linear = {last['classes'] / first['classes']:.0f}x; "
              f"s/class {first['s_per_class']:.2f} -> {last['s_per_class']:.2f}); peak memory "
              f"{first['peak_rss_mb']:.0f} -> {last['peak_rss_mb']:.0f} MiB")
        stages = ", ".join(f"{k} {v / last['classes']:.2f}" for k, v in last["stages"].items())
        print(f"s/class by stage at {last['classes']} classes: {stages}")
    if args.device.startswith("cuda"):
        rate = bare_forward(tmp / f"images-{sizes[-1]}", args.device, 128, args.precision)
        whole = rows[-1]["photos_per_s"]
        print(f"GPU: whole pipeline {whole:.0f} photos/s vs bare forward pass {rate:.0f} images/s "
              f"({whole / rate:.1%} of it)")
    (tmp / "scale.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
