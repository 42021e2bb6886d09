#!/usr/bin/env python3
"""`concepts` on a shared machine: each stage's wall time with 0, 1 and 2 competing busy processes.

One class (default: 50 tench photos of Imagenette val50) goes through `concepts run` (extract -> factorize ->
importance, no atlas or exports) in a fresh process, as a user runs it, while K processes spin on the CPU
(`while True: pass`, one core each), for K in --competitors. Three thread set-ups are compared:

* ``before``: what concepts did before its thread policy: torch's default threads (one per core) for everything,
  libgomp's default busy wait (``CONCEPTS_SMALL_WORK=0``, ``GOMP_SPINCOUNT=300000``);
* ``auto``: the default now: the CLI asks OpenMP for a passive wait, and small operations (the factorisation,
  the transforms, the factored importances) run on one thread (``concepts.runtime.threads_for``);
* ``1``: ``--threads 1`` for everything (the floor to beat: never slower than this).

Printed per set-up and K: model load, extract, factorize and importance seconds and their sum ("stages"; from
RUN/pipeline/last_run.json), the NMF fit alone (the concepts file's ``seconds``), run_pipeline's total (which also
holds the imports of the stage modules), and the ratios of the stages' sum to the same set-up without competitors
and to ``1`` with the same competitors. Targets: with one competitor at most
1.5x the quiet time; never slower than ``1``. The machine's own load (other users) is printed with each row: it
adds to the competitors.

    python benchmarks/contention.py                       # K = 0, 1, 2; before, auto, 1; 2 repeats
    python benchmarks/contention.py --modes auto,1 --repeat 3 --competitors 0,1
    python benchmarks/contention.py --device cuda          # the GPU case (untested: no GPU in the session)
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

import h5py

from common import ROOT, VAL50, load, span  # noqa: E402 (benchmarks/common.py)

MODES = {
    "before": ({"CONCEPTS_SMALL_WORK": "0", "GOMP_SPINCOUNT": "300000"}, []),
    "auto": ({}, []),
    "1": ({}, ["--threads", "1"]),
}
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "CONCEPTS_SMALL_WORK", "OMP_NUM_THREADS")
STAGES = ("load", "extract", "factorize", "importance")


def start_competitors(k: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def stop(processes: list[subprocess.Popen]) -> None:
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.wait()


def one_run(images: Path, labels: Path, out: Path, class_id: str, mode: str, args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES}
    extra_env, flags = MODES[mode]
    env.update(extra_env)
    cmd = [sys.executable, "-m", "concepts", "run", "--out", str(out), "--images", str(images), "--labels",
           str(labels), "--device", args.device, "--concepts", str(args.concepts), "--no-atlas", "--no-export",
           "--quiet", *flags]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"concepts run failed ({mode}):\n{done.stderr[-3000:]}")
    last = json.loads((out / "pipeline" / "last_run.json").read_text())
    with h5py.File(out / "concepts" / f"{class_id}.h5", "r") as handle:
        fit = float(handle.attrs["seconds"])
    seconds = dict(last["seconds"])
    row = {"load": float(last["load_s"]), "extract": seconds.get("extract", 0.0) - 0.0,
           "factorize": seconds.get("factorize", 0.0), "importance": seconds.get("importance", 0.0),
           "fit": fit, "total": float(last["total_s"]), "wall": wall}
    row["work"] = sum(row[s] for s in STAGES)  # the total without the imports that run_pipeline's total includes
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wnid", default="n01440764")
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--concepts", type=int, default=10)
    p.add_argument("--competitors", default="0,1,2")
    p.add_argument("--modes", default="before,auto,1")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="write every measurement here")
    args = p.parse_args()
    source = VAL50 / args.wnid
    if not source.is_dir():
        raise SystemExit(f"photos not found at {source}")
    from timm.data import ImageNetInfo

    tmp = Path(tempfile.mkdtemp(prefix="concepts-contention-"))
    images = tmp / "images"
    folder = images / args.wnid
    folder.mkdir(parents=True)
    for path in sorted(p for p in source.iterdir() if p.is_file())[:args.images]:
        (folder / path.name).symlink_to(path.resolve())
    labels = tmp / "labels.csv"
    labels.write_text(f"{args.wnid},{ImageNetInfo().label_names().index(args.wnid)}\n")
    modes = args.modes.split(",")
    ks = [int(k) for k in args.competitors.split(",")]
    print(f"one class, {args.images} photos, r = {args.concepts}, device {args.device}, {os.cpu_count()} cores; "
          f"{args.repeat} repeat(s); {load()} at the start", flush=True)
    results: dict[str, dict[int, list[dict]]] = {m: {} for m in modes}
    counter = 0
    for k in ks:
        competitors = start_competitors(k)
        try:
            time.sleep(1.0)
            for rep in range(args.repeat):
                for mode in modes:
                    counter += 1
                    row = one_run(images, labels, tmp / f"run-{counter}", args.wnid, mode, args)
                    row["load_average"] = os.getloadavg()[0]
                    results[mode].setdefault(k, []).append(row)
                    print(f"  K={k} {mode:>6} #{rep + 1}: " + ", ".join(f"{s} {row[s]:.2f}" for s in
                                                                    (*STAGES, "fit", "work", "total")) +
                          f" s ({load()})", flush=True)
        finally:
            stop(competitors)

    print(f"\n{'set-up':>7} {'K':>2} " + " ".join(f"{s:>13}" for s in (*STAGES, "nmf fit", "stages", "total")) +
          "   stages/quiet  stages/'1' at K")
    for mode in modes:
        for k in ks:
            rows = results[mode][k]
            cells = [span([r[s] for r in rows]) for s in (*STAGES, "fit", "work", "total")]
            quiet = results[mode].get(ks[0]) if ks[0] == 0 else None
            ratio = (f"{span([r['work'] / min(q['work'] for q in quiet) for r in rows])}" if quiet else "-")
            base = results.get("1", {}).get(k)
            versus = span([r["work"] / min(b["work"] for b in base) for r in rows]) if base and mode != "1" else "-"
            print(f"{mode:>7} {k:>2} " + " ".join(f"{c:>13}" for c in cells) + f"   {ratio:>12}  {versus:>15}")
    print("\nper stage, time with K competitors / time without (min over repeats / min over repeats):")
    for mode in modes:
        if 0 not in results[mode]:
            continue
        quiet = {s: min(r[s] for r in results[mode][0]) for s in (*STAGES, "fit", "work")}
        for k in ks:
            if k == 0:
                continue
            worst = {s: min(r[s] for r in results[mode][k]) for s in quiet}
            print(f"  {mode:>6} K={k}: " + ", ".join(f"{s} {worst[s] / quiet[s]:.2f}x" for s in quiet if quiet[s] > 0))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
