#!/usr/bin/env python3
"""Benchmark: our mini-batch NMF against scikit-learn's ``MiniBatchNMF``, time to the same error.

Rows: ``--rows`` (default 10^5) real EfficientNet-Lite0 patch rows (1280 channels, non-negative; see
``benchmarks/_rows.py``).  For each rank r, repeat (seed) and scikit-learn epoch budget E (``--sk-epochs``):

1. scikit-learn's ``MiniBatchNMF(n_components=r, batch_size=1024, init='nndsvda', beta_loss='frobenius',
   max_iter=E, tol=0, max_no_improvement=None)`` is fitted for exactly E epochs (its default early stopping,
   tol=1e-4 over 10 batches, stops inside the first epoch on these rows): its time ``t_sk`` and the relative error
   ``e_sk = ||A - U W|| / ||A||`` of its bank W (U: the exact NNLS of A on W, the same solver for both banks, so
   that the error is the bank's, not a transform's);
2. ours (``concepts.factorize.MiniBatchNMF``, same batch size and seed, nndsvda of a 16k-row sample) is fitted
   from scratch for n = 10, 20, 30, 50, 70, 100, 150, 200, 300, ... batches until its bank reaches ``e_sk``; the
   time of that fit (initialisation included) is ``t_ours``.

Printed: each run's budgets, seconds and errors, and ``t_sk / t_ours`` (how many times faster we reach the error
scikit-learn reaches in E epochs), with ranges over ``--repeats``.  If our fit never reaches ``e_sk`` within
``--max-epochs``, the run says so (no ratio).  The machine may be shared: run with ``OMP_WAIT_POLICY=PASSIVE``.

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/minibatch_nmf.py [--rows 100000] [--ranks 10 50] [--repeats 3]
        [--sk-epochs 1 5 20] [--max-epochs 20] [--threads N] [--json F]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rows import DEFAULT_CACHE, load_rows  # noqa: E402
from common import span  # noqa: E402 (benchmarks/common.py)


def bank_error(A: torch.Tensor, W: np.ndarray) -> float:
    from concepts.factorize import _solvers as S

    Wt = torch.from_numpy(np.ascontiguousarray(W, np.float32))
    err2 = norm2 = 0.0
    for s in range(0, A.shape[0], 32768):
        x = A[s:s + 32768]
        U = S.nnls_transform(x, Wt, 32768, 200, 1e-5)
        err2 += float((x - U @ Wt).double().square().sum())
        norm2 += float(x.double().square().sum())
    return (err2 / norm2) ** 0.5


def run_sklearn(A: np.ndarray, r: int, seed: int, epochs: int) -> tuple[float, np.ndarray, int]:
    from sklearn.decomposition import MiniBatchNMF

    model = MiniBatchNMF(n_components=r, batch_size=1024, init="nndsvda", beta_loss="frobenius", max_iter=epochs,
                         tol=0, max_no_improvement=None, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(A)
    return time.perf_counter() - start, model.components_, int(model.n_iter_)


def run_ours(A: np.ndarray, r: int, seed: int, steps: int) -> tuple[float, np.ndarray]:
    from concepts.factorize.minibatch_nmf import MiniBatchNMF

    model = MiniBatchNMF(r, batch_size=1024, n_steps=steps, init="nndsvda", random_state=seed, device="cpu",
                         eval_rows=1024)
    start = time.perf_counter()
    model.fit(A)
    return time.perf_counter() - start, model.components_


def step_grid(limit: int):
    """10, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, ... up to ``limit``."""
    grid = [10, 20, 30, 50, 70] + [m * 10 ** e for e in range(2, 6) for m in (1, 1.5, 2, 3, 5, 7)]
    return [int(n) for n in grid if n <= limit]


def _range(values) -> str:
    return span(values, ".4g")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--ranks", type=int, nargs="+", default=[10, 50])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sk-epochs", type=int, nargs="+", default=[1, 5, 20])
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    A = load_rows(args.rows, args.cache)
    At = torch.from_numpy(A)
    print(f"rows: {A.shape[0]} x {A.shape[1]} (min {A.min():.3g}), {torch.get_num_threads()} threads")
    steps_per_epoch = -(-A.shape[0] // 1024)
    results = {}
    for r in args.ranks:
        runs = []
        for seed in range(args.repeats):
            for budget in args.sk_epochs:
                t_sk, W_sk, sk_epochs = run_sklearn(A, r, seed, budget)
                e_sk = bank_error(At, W_sk)
                reached, e_ours = None, float("nan")
                for steps in step_grid(args.max_epochs * steps_per_epoch):
                    t_ours, W_ours = run_ours(A, r, seed, int(steps))
                    e_ours = bank_error(At, W_ours)
                    if e_ours <= e_sk:
                        reached = (int(steps), t_ours, e_ours)
                        break
                run = {"seed": seed, "sk_epochs": sk_epochs, "sk_seconds": t_sk, "sk_error": e_sk, "ratio": None}
                if reached is None:
                    print(f"r={r} seed {seed}: sklearn {sk_epochs} epochs {t_sk:.2f} s error {e_sk:.5f}; ours did "
                          f"not reach it in {args.max_epochs} epochs (last error {e_ours:.5f})", flush=True)
                else:
                    steps, t_ours, e_ours = reached
                    run.update(ours_steps=steps, ours_seconds=t_ours, ours_error=e_ours, ratio=t_sk / t_ours)
                    print(f"r={r} seed {seed}: sklearn {sk_epochs} epochs {t_sk:.2f} s error {e_sk:.5f} | ours "
                          f"{steps} batches ({steps / steps_per_epoch:.2f} epochs) {t_ours:.2f} s error {e_ours:.5f} "
                          f"| time to sklearn's error: x{t_sk / t_ours:.1f} faster", flush=True)
                runs.append(run)
        results[r] = runs
        for budget in args.sk_epochs:
            sel = [x for x in runs if x["sk_epochs"] == budget]
            ok = [x for x in sel if x["ratio"] is not None]
            if ok:
                print(f"r={r}, sklearn {budget} epochs, over {len(sel)} repeats: sklearn "
                      f"{_range(x['sk_seconds'] for x in sel)} s to error {_range(x['sk_error'] for x in sel)}; ours "
                      f"{_range(x['ours_seconds'] for x in ok)} s to the same error; ratio "
                      f"{_range(x['ratio'] for x in ok)} ({len(ok)}/{len(sel)} runs reached it)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
