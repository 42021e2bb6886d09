#!/usr/bin/env python3
"""One forward pass on two threads against two passes at once on one thread each, quiet and beside a busy process.

The bundled EfficientNet-Lite0 (``g``, up to its last feature map) on 64 random 224-px images in batches of 8:

* ``intra2``: one pass at a time, torch's intra-op threads = 2 (what the extractor does);
* ``inter2x1``: two batches at once in two Python threads, one intra-op thread each (no barrier between them);
* ``one``: one pass at a time on one thread.

Each is timed twice after a warm-up, with K = 0 and then 1 busy process (``while True: pass``). Why: with one busy
process on 2 cores, two-thread work keeps at best 2/3 of the cores, and intra-op threads wait for the slower one
at every operation (docs/benchmarks.md, "A shared machine").

    OMP_WAIT_POLICY=PASSIVE python benchmarks/forward_streams.py
"""
from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from concepts.models import load_split


def main() -> None:
    split, _ = load_split(None, device="cpu")
    batches = list(torch.randn(64, 3, 224, 224, generator=torch.Generator().manual_seed(0)).split(8))

    def forward(batch):
        with torch.inference_mode():
            return split.g(batch)

    def intra():
        torch.set_num_threads(2)
        for batch in batches:
            forward(batch)

    def inter():
        torch.set_num_threads(1)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(forward, batches))

    def one():
        torch.set_num_threads(1)
        for batch in batches:
            forward(batch)

    for k in (0, 1):
        competitors = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]
        try:
            time.sleep(0.5)
            for name, run in (("intra2", intra), ("inter2x1", inter), ("one", one)):
                run()
                times = []
                for _ in range(2):
                    start = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - start)
                print(f"K={k} {name}: {min(times):.2f}-{max(times):.2f} s", flush=True)
        finally:
            for process in competitors:
                process.kill()


if __name__ == "__main__":
    main()
