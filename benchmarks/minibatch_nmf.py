#!/usr/bin/env python3
"""Benchmark: our mini-batch NMF against scikit-learn's ``MiniBatchNMF``, time to the same error.

Rows: ``--rows`` (default 10^5) real EfficientNet-Lite0 patch rows (1280 channels, non-negative; see
``benchmarks/_rows.py``).  For each rank r and repeat (seed):

1. scikit-learn's ``MiniBatchNMF(n_components=r, batch_size=1024, init='nndsvda', beta_loss='frobenius',
   max_iter=--sk-epochs, tol=1e-4, max_no_improvement=10)`` is fitted: its time ``t_sk`` and the relative error
   ``e_sk = ||A - U W|| / ||A||`` of its bank W (U: the exact NNLS of A on W, the same solver for both banks, so
   that the error is the bank's, not a transform's);
2. ours (``concepts.factorize.MiniBatchNMF``, same batch size, init and seed) is fitted for 1, 2, 3, ... epochs
   (tol 0: exactly that many) until its bank reaches ``e_sk``; the time of that fit is ``t_ours``.

Printed: each run's epochs, seconds and errors, and ``t_sk / t_ours`` (how many times faster we reach the error
scikit-learn stops at), with ranges over ``--repeats``.  If our fit never reaches ``e_sk`` within
``--max-epochs``, the run says so (no ratio).  The machine may be shared: run with ``OMP_WAIT_POLICY=PASSIVE``.

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/minibatch_nmf.py [--rows 100000] [--ranks 10 50] [--repeats 3]
        [--sk-epochs 200] [--max-epochs 20] [--threads N] [--json F]
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
                         tol=1e-4, max_no_improvement=10, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(A)
    return time.perf_counter() - start, model.components_, int(model.n_iter_)


def run_ours(A: np.ndarray, r: int, seed: int, epochs: int) -> tuple[float, np.ndarray]:
    from concepts.factorize.minibatch_nmf import MiniBatchNMF

    model = MiniBatchNMF(r, batch_size=1024, max_epochs=epochs, tol=0, init="nndsvda", random_state=seed,
                         device="cpu", eval_rows=1024)
    start = time.perf_counter()
    model.fit(A)
    return time.perf_counter() - start, model.components_


def _range(values) -> str:
    values = list(values)
    return f"{min(values):.4g}-{max(values):.4g}" if len(values) > 1 else f"{values[0]:.4g}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--ranks", type=int, nargs="+", default=[10, 50])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sk-epochs", type=int, default=200)
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
    results = {}
    for r in args.ranks:
        runs = []
        for seed in range(args.repeats):
            t_sk, W_sk, sk_epochs = run_sklearn(A, r, seed, args.sk_epochs)
            e_sk = bank_error(At, W_sk)
            reached = None
            for epochs in range(1, args.max_epochs + 1):
                t_ours, W_ours = run_ours(A, r, seed, epochs)
                e_ours = bank_error(At, W_ours)
                if e_ours <= e_sk:
                    reached = (epochs, t_ours, e_ours)
                    break
            if reached is None:
                print(f"r={r} seed {seed}: sklearn {sk_epochs} epochs {t_sk:.2f} s error {e_sk:.5f}; ours did not "
                      f"reach it in {args.max_epochs} epochs (last error {e_ours:.5f})", flush=True)
                runs.append({"sk_seconds": t_sk, "sk_error": e_sk, "sk_epochs": sk_epochs, "ratio": None})
                continue
            epochs, t_ours, e_ours = reached
            ratio = t_sk / t_ours
            runs.append({"sk_seconds": t_sk, "sk_error": e_sk, "sk_epochs": sk_epochs, "ours_seconds": t_ours,
                         "ours_error": e_ours, "ours_epochs": epochs, "ratio": ratio})
            print(f"r={r} seed {seed}: sklearn {sk_epochs} epochs {t_sk:.2f} s error {e_sk:.5f} | ours {epochs} "
                  f"epochs {t_ours:.2f} s error {e_ours:.5f} | time to sklearn's error: x{ratio:.1f} faster",
                  flush=True)
        results[r] = runs
        ok = [x for x in runs if x["ratio"] is not None]
        if ok:
            print(f"r={r} over {len(runs)} repeats: sklearn {_range(x['sk_seconds'] for x in runs)} s, ours "
                  f"{_range(x['ours_seconds'] for x in ok)} s to the same error; ratio "
                  f"{_range(x['ratio'] for x in ok)} ({len(ok)}/{len(runs)} runs reached it)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
