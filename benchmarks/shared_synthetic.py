#!/usr/bin/env python3
"""Ground truth for dataset-scope dictionaries: the synthetic set's shared concepts are one atom each.

On the synthetic set of ``concepts synth`` (5 classes; ``green_triangle`` and ``yellow_ring`` appear in every class,
each class has its own key concept) and its CNN ``synth_cnn``, this script extracts every class in patches mode
(once), fits one dictionary of each ``--atoms`` size on all the classes for each ``--methods`` entry (``concepts
factorize --scope dataset --concepts-per-class N``), and scores every class's view with
:func:`concepts.evaluate.shared.shared_recovery`:

* per shared label: the dictionary atom each class's view matches it to (Hungarian on IoU), the number of distinct
  atoms (1 = one atom used by all the classes), the lowest IoU over the classes and its share of the ceiling (the
  IoU of the true masks at the 8x8 grid); ``holds`` when it is one atom in every class at >= 0.5 of the ceiling;
* the normalised MSE of the dictionary on every row (is the method converged? NMF's is the reference);
* per class: key IoU of the view against per-class NMF with N concepts fitted on the class alone (the method
  comparison of docs/evaluation.md, r = N), and whether the most important concept (exact gradient x input of the
  linear head) is the key.

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/shared_synthetic.py [--data runs/synth] [--run runs/synth-shared]
        [--methods nmf minibatch_nmf topk_sae] [--atoms 8 12 16 24] [--per-class 6 8] [--seed 0] [--sae-k 4]
        [--threads 1]
(``--data`` is made by ``concepts synth --out runs/synth`` when absent.)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.3f}"


def dictionary_nmse(run: Path) -> float:
    """Normalised MSE ``sum ||x - x^||^2 / sum ||x - mean||^2`` of the run's shared dictionary on every row."""
    import numpy as np

    from concepts.factorize.shared import shared_estimator
    from concepts.schema import RunFolder

    folder = RunFolder(run)
    est = shared_estimator(folder)
    rows = []
    for class_id in folder.input_classes("extract", None):
        with folder.activations(class_id) as cache:
            rows.extend(cache.iter_rows(chunk_rows=4096, dtype=np.float32))
    X = np.concatenate(rows).astype(np.float64)
    X_hat = np.asarray(est.inverse_transform(est.transform(X.astype(np.float32))), np.float64)
    err, total = float(((X - X_hat) ** 2).sum()), float(((X - X.mean(0)) ** 2).sum())
    return err / total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "runs" / "synth")
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "synth-shared")
    p.add_argument("--methods", nargs="+", default=["nmf", "minibatch_nmf", "topk_sae"])
    p.add_argument("--atoms", type=int, nargs="+", default=[8, 12, 16, 24])
    p.add_argument("--per-class", type=int, nargs="+", default=[6, 8])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sae-k", type=int, default=4, help="active atoms per row of the SAEs (the TopK k)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from concepts.evaluate import synthetic as syn
    from concepts.evaluate.shared import MIN_SHARE, shared_recovery
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run, make_estimator

    if not (args.data / syn.DEFINITION_FILE).is_file() or not (args.data / "synth_cnn.pt").is_file():
        from concepts.evaluate.synthetic_model import make_synthetic

        print(f"making the synthetic set in {args.data} (concepts synth defaults)", flush=True)
        make_synthetic(args.data, threads=args.threads, progress=False)
    start = time.perf_counter()
    extract_run(args.data / "images", args.run, model="synth_cnn", checkpoint=str(args.data / "synth_cnn.pt"),
                labels=str(args.data / "labels.csv"), mode="patches", workers=0, threads=args.threads,
                progress=False)
    print(f"extract: {time.perf_counter() - start:.1f} s ({args.run})", flush=True)
    failed = 0
    summary = []
    for per_class, atoms, method in [(p, a, m) for p in args.per_class for a in args.atoms for m in args.methods]:
        start = time.perf_counter()
        extra = {"k": args.sae_k} if "k" in make_estimator(method, atoms).get_params() else {}
        factorize_run(args.run, scope="dataset", method=method, n_concepts=atoms,
                      concepts_per_class=per_class, seed=args.seed, threads=args.threads, overwrite=True,
                      progress=False, **extra)
        fit = time.perf_counter() - start
        nmse = dictionary_nmse(args.run)
        result = shared_recovery(args.run, baseline="nmf", baseline_concepts=per_class, seed=args.seed)
        label = f"{method} (k = {args.sae_k})" if extra else method
        print(f"\n## {label}: {atoms} atoms on {len(result['classes'])} classes, {per_class} per class "
              f"(factorize {fit:.1f} s; normalised MSE of the dictionary on all rows {nmse:.4f})")
        print("| shared concept | classes | atoms | holds | min IoU | mean IoU | mean IoU, per-class NMF | "
              "mean IoU of the masks | min share of the masks' |")
        print("|---|---|---|---|---|---|---|---|---|")
        for s in result["shared"]:
            found = ", ".join(f"#{a}" for a in s["atoms"]) or "none"
            if s["missing"]:
                found += f" (missing in {len(s['missing'])})"
            print(f"| {s['label']} | {s['classes']} | {found} | {'yes' if s['holds'] else 'no'} | "
                  f"{_fmt(s['min_iou'])} | {_fmt(s['mean_iou'])} | {_fmt(s['baseline_mean_iou'])} | "
                  f"{_fmt(s['mean_oracle_iou'])} | {_fmt(s['min_share'])} |")
            failed += not s["holds"]
        print("\n| class | key IoU, view of the shared dictionary | key IoU, per-class NMF | key IoU of the masks | "
              "top = key (view / NMF) |")
        print("|---|---|---|---|---|")
        for row in result["classes"]:
            print(f"| {row['class_name']} | {_fmt(row['key_iou'])} | {_fmt(row['baseline_key_iou'])} | "
                  f"{_fmt(row['oracle_key_iou'])} | {row['top_is_key']} / {row['baseline_top_is_key']} |")
        k = result["key"]
        print(f"| mean | {_fmt(k['key_iou'])} | {_fmt(k['baseline_key_iou'])} | {_fmt(k['oracle_key_iou'])} | "
              f"{_fmt(k['top_is_key'])} / {_fmt(k['baseline_top_is_key'])} |")
        print(f"key IoU >= per-class NMF's in {k['at_least_baseline']}/{k['classes']} classes; shared concepts "
              f"holding (one atom, IoU >= {MIN_SHARE} x the masks'): "
              f"{sum(s['holds'] for s in result['shared'])}/{len(result['shared'])}", flush=True)
        summary.append((label, atoms, per_class, result, nmse))
    print(f"\n## summary: shared concept: its atoms over the classes (holds: "
          f"one atom in every class, IoU >= {MIN_SHARE} x the masks'); key IoU: mean over the classes")
    names = [s["label"] for s in summary[0][3]["shared"]] if summary else []
    print("| method | atoms | per class | NMSE | " + " | ".join(names) + " | key IoU: view / per-class NMF | "
          "classes with view >= NMF |")
    print("|---|---|---|---|" + "---|" * len(names) + "---|---|")
    for method, atoms, per_class, result, nmse in summary:
        cells = []
        for s in result["shared"]:
            found = ", ".join(f"#{a}" for a in s["atoms"]) or "none"
            missing = f", missing in {len(s['missing'])}" if s["missing"] else ""
            cells.append(f"{'**holds**' if s['holds'] else 'no'} ({found}{missing}; min IoU {_fmt(s['min_iou'])})")
        k = result["key"]
        print(f"| {method} | {atoms} | {per_class} | {nmse:.4f} | " + " | ".join(cells) + f" | {_fmt(k['key_iou'])} / "
              f"{_fmt(k['baseline_key_iou'])} | {k['at_least_baseline']}/{k['classes']} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
