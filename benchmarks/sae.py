#!/usr/bin/env python3
"""Benchmark: our TopK / BatchTopK SAEs against overcomplete's, on real EfficientNet-Lite0 patch rows.

Rows: ``--rows`` (default 10^5) patch rows of EfficientNet-Lite0's last feature map (1280 channels) on Imagenette
photos (``benchmarks/_rows.py``: extracted once into ``bench-out/sae-rows``), plus 8192 held-out rows for the
evaluation.  Both libraries train on the same rows, with the same width, k, number of steps, batch size, optimiser
(Adam, fused, same lr) and seed:

* ours: ``TopKSAE`` / ``BatchTopKSAE`` from ``concepts.factorize.sae`` (``fit`` on the array; AuxK for dead latents,
  linear warm-up over the first 5% of the steps and decay over the last 20%);
* overcomplete 0.3 (PyPI, benchmark-only; its package import is shimmed: the plotting module needs cv2 and
  matplotlib < 3.9): ``TopKSAE(top_k=k)`` / ``BatchTopKSAE(top_k=k * batch)`` — its BatchTopK ``top_k`` is per
  batch, so k*B gives the same mean L0 —, trained by its own ``train_sae`` loop with plain MSE (its cheapest loss;
  its AuxK variant takes a top-K/2 per row), on a DataLoader of exactly steps x batch shuffled rows.

Printed per repeat and as ranges over ``--repeats``: rows/s of training (our whole ``fit`` — initialisation and
final evaluation included — against their training loop only), normalised MSE ``sum ||x - x^||^2 / sum ||x -
mean||^2`` and mean L0 on the held-out rows at inference (TopK: k per row; BatchTopK: the saved threshold — theirs
the running threshold of eval mode), dead latents (never active on the held-out rows), and the ratios
ours / theirs.  BatchTopK is also scored at exactly equal L0: for each trained model, the ``k n`` largest ReLU'd
pre-activations over all n held-out rows are kept (``evaluate_equal_l0``: the same as each model's threshold tuned
on the held-out rows to mean L0 = k), so the NMSE ratio compares the learned encoders and dictionaries, not the two
ways of setting the inference threshold.  The machine may be shared: run with ``OMP_WAIT_POLICY=PASSIVE`` and read the ranges.

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/sae.py [--rows 100000] [--width 4096] [--k 32] [--steps 150]
        [--batch 1024] [--lr 5e-4] [--repeats 3] [--device cpu] [--threads N] [--methods topk batchtopk] [--json F]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rows import DEFAULT_CACHE, load_rows  # noqa: E402
from common import span  # noqa: E402 (benchmarks/common.py)


def import_overcomplete():
    """overcomplete's SAE classes and training loop, without its plotting module (cv2, matplotlib < 3.9)."""
    vis = types.ModuleType("overcomplete.visualization")
    for name in ("overlay_top_heatmaps", "evidence_top_images", "zoom_top_images", "contour_top_image"):
        setattr(vis, name, None)
    sys.modules.setdefault("overcomplete.visualization", vis)
    try:
        from overcomplete.sae import BatchTopKSAE, TopKSAE, train_sae
    except ImportError as exc:
        sys.exit(f"overcomplete is not installed ({exc}); `pip install overcomplete einops` in the benchmark venv")
    return TopKSAE, BatchTopKSAE, train_sae


@torch.no_grad()
def evaluate(encode, decode, X: torch.Tensor, chunk: int = 2048) -> dict:
    err = cent = 0.0
    nnz = 0
    mean = X.double().mean(0).float()
    fired = None
    for s in range(0, X.shape[0], chunk):
        x = X[s:s + chunk]
        z = encode(x)
        x_hat = decode(z)
        err += float((x - x_hat).double().square().sum())
        cent += float((x - mean).double().square().sum())
        active = z > 0
        nnz += int(active.sum())
        fired = active.any(0) if fired is None else fired | active.any(0)
    return {"nmse": err / cent, "l0": nnz / X.shape[0], "dead": int((~fired).sum())}


@torch.no_grad()
def evaluate_equal_l0(dense, decode, X: torch.Tensor, k: int, chunk: int = 2048) -> dict:
    """Scores at mean L0 exactly ``k``: the ``k n`` largest non-negative pre-activations over all n held-out rows.

    ``dense(x)`` is the model's ReLU'd pre-activation before any selection.  Keeping the ``k n`` largest entries
    of the n x K block is the same as one threshold per model tuned on these rows to mean L0 = k: a BatchTopK
    selection over the whole held-out set, which takes the calibration of the inference threshold out of the
    comparison and leaves the learned dictionary and encoder.
    """
    Z = torch.cat([dense(X[s:s + chunk]).clamp_min(0) for s in range(0, X.shape[0], chunk)])
    n_keep = min(k * X.shape[0], int((Z > 0).sum()))
    theta = float(torch.topk(Z.reshape(-1), n_keep, sorted=False).values.min())
    Z = torch.where(Z >= theta, Z, torch.zeros((), dtype=Z.dtype)) if theta > 0 else Z
    err = cent = 0.0
    mean = X.double().mean(0).float()
    for s in range(0, X.shape[0], chunk):
        x = X[s:s + chunk]
        err += float((x - decode(Z[s:s + chunk])).double().square().sum())
        cent += float((x - mean).double().square().sum())
    active = Z > 0
    return {"nmse": err / cent, "l0": int(active.sum()) / X.shape[0], "dead": int((~active.any(0)).sum()),
            "theta": theta}


def run_ours(method: str, X: np.ndarray, Xe: torch.Tensor, args, seed: int) -> dict:
    from concepts.factorize.sae import BatchTopKSAE, TopKSAE

    cls = TopKSAE if method == "topk" else BatchTopKSAE
    model = cls(args.width, k=args.k, n_steps=args.steps, batch_size=args.batch, lr=args.lr, random_state=seed,
                device=args.device, eval_rows=4096, init_rows=16384, log_every=max(1, args.steps))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.fit(X)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    dev = Xe.to(args.device)
    res = evaluate(lambda x: model.transform(x), lambda z: model.inverse_transform(z), dev)
    if method == "batchtopk":
        res["equal_l0"] = evaluate_equal_l0(model._pre, model.inverse_transform, dev, args.k)
    res.update(seconds=seconds, rows_per_s=args.steps * args.batch / seconds)
    return res


def run_theirs(method: str, X: np.ndarray, Xe: torch.Tensor, args, seed: int) -> dict:
    TopK, BatchTopK, train_sae = import_overcomplete()
    torch.manual_seed(seed)
    d = X.shape[1]
    if method == "topk":
        sae = TopK(d, args.width, top_k=args.k, device=args.device)
    else:
        sae = BatchTopK(d, args.width, top_k=args.k * args.batch, device=args.device)
    try:
        opt = torch.optim.Adam(sae.parameters(), lr=args.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(sae.parameters(), lr=args.lr)
    data = torch.from_numpy(X)
    gen = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(data, num_samples=args.steps * args.batch, generator=gen,
                                             replacement=False)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, sampler=sampler, drop_last=True)

    def mse(x, x_hat, pre_codes, codes, dictionary):
        return (x - x_hat).square().mean()

    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_sae(sae, loader, mse, opt, nb_epochs=1, monitoring=0, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    sae.eval()
    dev = Xe.to(args.device)
    res = evaluate(lambda x: sae.encode(x)[1], lambda z: sae.decode(z), dev)
    if method == "batchtopk":  # their encoder's ReLU'd codes, before the batch threshold
        res["equal_l0"] = evaluate_equal_l0(lambda x: sae.encoder(x)[1], sae.decode, dev, args.k)
    res.update(seconds=seconds, rows_per_s=args.steps * args.batch / seconds)
    return res


def _range(values) -> str:
    return span(values, ".4g")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--methods", nargs="+", default=["topk", "batchtopk"], choices=["topk", "batchtopk"])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import_overcomplete()
    rows = load_rows(args.rows + 8192, args.cache)
    X, Xe = rows[: args.rows], torch.from_numpy(rows[args.rows:])
    print(f"rows: {X.shape[0]} x {X.shape[1]} train, {Xe.shape[0]} held out; width {args.width}, k {args.k}, "
          f"{args.steps} steps of {args.batch}, lr {args.lr}, {torch.get_num_threads()} threads, {args.device}")
    results = {}
    for method in args.methods:
        runs = []
        for rep in range(args.repeats):
            seed = rep
            ours = run_ours(method, X, Xe, args, seed)
            theirs = run_theirs(method, X, Xe, args, seed)
            ratio = ours["rows_per_s"] / theirs["rows_per_s"]
            runs.append({"ours": ours, "theirs": theirs, "speed_ratio": ratio})
            print(f"{method} #{rep}: ours {ours['rows_per_s']:.0f} rows/s nmse {ours['nmse']:.4f} L0 {ours['l0']:.1f} "
                  f"dead {ours['dead']} | overcomplete {theirs['rows_per_s']:.0f} rows/s nmse {theirs['nmse']:.4f} "
                  f"L0 {theirs['l0']:.1f} dead {theirs['dead']} | speed x{ratio:.2f}", flush=True)
            if "equal_l0" in ours:
                eo, et = ours["equal_l0"], theirs["equal_l0"]
                print(f"{method} #{rep} at equal L0 (top {args.k} x {Xe.shape[0]} over the held-out rows): "
                      f"ours nmse {eo['nmse']:.4f} L0 {eo['l0']:.2f} dead {eo['dead']} | overcomplete nmse "
                      f"{et['nmse']:.4f} L0 {et['l0']:.2f} dead {et['dead']} | nmse ours/theirs "
                      f"{eo['nmse'] / et['nmse']:.3f}", flush=True)
        results[method] = runs
        o = [r["ours"] for r in runs]
        t = [r["theirs"] for r in runs]
        print(f"{method} over {len(runs)} repeats: rows/s ours {_range(r['rows_per_s'] for r in o)} vs "
              f"{_range(r['rows_per_s'] for r in t)} (ratio {_range(r['speed_ratio'] for r in runs)}); "
              f"nmse ours {_range(r['nmse'] for r in o)} vs {_range(r['nmse'] for r in t)}; "
              f"L0 ours {_range(r['l0'] for r in o)} vs {_range(r['l0'] for r in t)}; "
              f"dead ours {_range(r['dead'] for r in o)} vs {_range(r['dead'] for r in t)}", flush=True)
        if "equal_l0" in o[0]:
            print(f"{method} at equal L0 over {len(runs)} repeats: nmse ours "
                  f"{_range(r['equal_l0']['nmse'] for r in o)} vs {_range(r['equal_l0']['nmse'] for r in t)} "
                  f"(ratio {_range(a['equal_l0']['nmse'] / b['equal_l0']['nmse'] for a, b in zip(o, t))}); "
                  f"L0 ours {_range(r['equal_l0']['l0'] for r in o)} vs {_range(r['equal_l0']['l0'] for r in t)}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
