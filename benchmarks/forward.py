#!/usr/bin/env python3
"""Where the forward-pass speed of `concepts` comes from: each inference setting against plain timm eager.

    python benchmarks/forward.py [--model NAME --random-init] [--batch-size 32] [--threads 2] [--precisions fp32,bf16]

Every setting runs in its own child process (the allocator tuning is process-wide and cannot be undone), on the
same random input batch, and prints images/s of g (the model up to its cut) and the ratio to the first row:
  timm        the model as timm builds it, NCHW memory, glibc's default allocator
  +cl         channels-last memory
  +malloc     + concepts.runtime.configure_process: allocator tuning (no page-fault churn for large tensors)
  concepts    + batch norms folded, convolutions fused with their activations (concepts.models.load_split)
On CUDA the allocator row measures nothing new (PyTorch caches GPU memory itself) and fusion is not used.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("timm", "+cl", "+malloc", "concepts")


def measure(setting: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from concepts.models import load_split
    from concepts.runtime import allocator_tuned, autocast_dtype, configure_process

    configure_process()  # the CLI's set-up (allocator tuning unless CONCEPTS_MALLOC_TUNING=0 for this row)

    split, info = load_split(args.model, device=args.device, pretrained=not args.random_init,
                             optimize=setting == "concepts")
    if setting == "timm":
        split.model.to(memory_format=torch.contiguous_format)
        split._channels_last = False
    size = split.input_size
    x = torch.randn(args.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)).to(split.device)
    dtype = autocast_dtype(args.precision)
    sync = torch.cuda.synchronize if split.device.type == "cuda" else (lambda: None)
    with torch.inference_mode(), torch.autocast(split.device.type, dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        for _ in range(2):
            split.g(x)
        sync()
        start = time.perf_counter()
        for _ in range(args.repeats):
            split.g(x)
        sync()
    seconds = time.perf_counter() - start
    return {"setting": setting, "img_s": args.repeats * args.batch_size / seconds, "model": info["model"],
            "device": str(split.device), "folded": info.get("folded_norms", 0),
            "fused": info.get("fused_convolutions", 0),
            "allocator_tuned": allocator_tuned()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    p.add_argument("--device", default=None)
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--precision", help=argparse.SUPPRESS)
    p.add_argument("--setting", choices=SETTINGS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.setting:  # child process: one measurement, as JSON
        print(json.dumps(measure(args.setting, args)))
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    forwarded = ["--batch-size", str(args.batch_size), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    forwarded += (["--model", args.model] if args.model else []) + (["--device", args.device] if args.device else [])
    forwarded += ["--random-init"] if args.random_init else []
    for precision in args.precisions.split(","):
        rows = []
        for setting in SETTINGS:
            cmd = [sys.executable, __file__, *forwarded, "--setting", setting, "--precision", precision]
            tuned = setting in ("+malloc", "concepts")
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  env=dict(env, CONCEPTS_MALLOC_TUNING="1" if tuned else "0"))
            if done.returncode != 0:
                raise SystemExit(f"{setting} failed:\n{done.stderr[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            if row["device"] == "cpu" and row["allocator_tuned"] != tuned:
                raise SystemExit(f"{setting}: allocator tuning is {row['allocator_tuned']}, expected {tuned}")
            rows.append(row)
        first = rows[0]
        print(f"{first['model']} on {first['device']}, {precision}, batch {args.batch_size}, {args.threads} threads "
              f"({rows[-1]['folded']} norms folded, {rows[-1]['fused']} convolutions fused with their activations)")
        for row in rows:
            print(f"  {row['setting']:9s} {row['img_s']:8.1f} img/s  {row['img_s'] / first['img_s']:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
