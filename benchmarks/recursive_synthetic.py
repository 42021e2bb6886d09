#!/usr/bin/env python3
"""Recursive sub-concepts on the planted sub-types of `concepts synth --variant subtypes` (the figures of
docs/evaluation.md; the same pipeline as tests/evaluate/test_evaluate_subtypes.py).

    python benchmarks/recursive_synthetic.py [--train-per-class 150 --epochs 3 --batch-size 32] [--concepts 2]
        [--sub-concepts 2] [--out docs/evaluation/recursive] [--threads 2]

Trains synth_cnn_subtypes, extracts class zebra (patches mode), factorises it with ``--concepts`` concepts and the
recursive step (rows at or above the 90th percentile), scores the sub-concepts (gradient x input, exact for this
GAP + linear head) and prints: whether NMF merged the two sub-types, the sub-type mix of the parent's strong rows,
the purity of the sub-concepts, the reconstruction error of those rows before and after, the seconds of each step;
and writes zebra_synthetic.png (the 8 strongest positions of the parent and of each sub-concept, with context).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from concepts.evaluate import synthetic as syn  # noqa: E402
from concepts.evaluate.subtypes import split_report, subtype_of_rows  # noqa: E402
from recursive_real import crop_sheet  # noqa: E402


def main() -> int:
    from concepts.evaluate.synthetic_model import make_synthetic
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run
    from concepts.schema import RunFolder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--concepts", type=int, default=2)
    parser.add_argument("--sub-concepts", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "evaluation" / "recursive"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="recursive-synth-"))
    data, run, zebra = work / "data", work / "run", syn.class_names()[0]
    try:
        t = time.perf_counter()
        meta = make_synthetic(data, n_per_class=30, n_train_per_class=args.train_per_class, epochs=args.epochs,
                              batch_size=args.batch_size, seed=args.seed, device="cpu", progress=False,
                              variant="subtypes")
        print(f"synth --variant subtypes: {meta['model']['name']} test accuracy {meta['model']['test_accuracy']:.3f} "
              f"({time.perf_counter() - t:.1f} s, {args.train_per_class} scenes/class x {args.epochs} epochs)")
        extract_run(data / "images", run, model="synth_cnn_subtypes", checkpoint=str(data / "synth_cnn.pt"),
                    labels=str(data / "labels.csv"), mode="patches", classes=[zebra], workers=0, progress=False)
        t = time.perf_counter()
        factorize_run(run, n_concepts=args.concepts, seed=args.seed, progress=False)
        bank_s = time.perf_counter() - t
        t = time.perf_counter()
        factorize_run(run, n_concepts=args.concepts, seed=args.seed, recursive=True, sub_concepts=args.sub_concepts,
                      threshold_percentile=90, overwrite=True, progress=False)
        print(f"factorize r = {args.concepts}: {bank_s:.2f} s; --recursive (bank reused): "
              f"{time.perf_counter() - t:.2f} s")
        folder = RunFolder(run)
        with folder.activations(zebra) as cache:
            truth = subtype_of_rows(cache)
        record = folder.concepts(zebra)
        report = split_report(record, truth)
        print(f"planted rows: {np.bincount(truth, minlength=3)[1:].tolist()} (0 / 90 degrees) of {len(truth)}")
        print(f"top-level concept #{report['parent']} strongest on both sub-types: {report['merged']}; its "
              f"{report['rows']} strong rows: {report['planted_rows']} planted, mix {report['mix']}, purity "
              f"{report['parent_purity']:.3f}")
        print(f"its {args.sub_concepts} sub-concepts: contingency (sub-concept x sub-type) {report['contingency']}, "
              f"purity {report['purity']:.3f}")
        kid = int(report["children"][0] - record.n_concepts)
        print(f"relative error of those rows: class bank {record.tree.rel_error_before[kid]:.3f}, sub-concepts "
              f"{record.tree.rel_error_after[kid]:.3f}")
        importance_run(run, methods=["gradient"], progress=False)
        tree = folder.concept_tree(zebra)
        for node in report["children"]:
            n = tree[int(node)]
            print(f"sub-concept #{n.node}: share of parent {n.share_of_parent['gradient']:.1%}, of the class "
                  f"{n.share['gradient']:.1%}")
        lines = [(f"concept #{report['parent']}", np.arange(len(truth)), record.coefficients[:, report["parent"]])]
        lines += [(f"  sub #{tree[int(n)].node}", tree[int(n)].rows, tree[int(n)].coefficients)
                  for n in report["children"]]
        crop_sheet(folder, zebra, lines, Path(args.out) / "zebra_synthetic.png", size=72, grow=3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
