#!/usr/bin/env python3
"""End to end, `concepts` against the reference CRAFT (craft-xai 0.0.3), on the same images.

Both run in one invocation of this script, on the same photos (symlinked into a temp folder in
sorted order, which is the order the reference reads), with the same model (bundled
EfficientNet-Lite0), r, patch size, number of Sobol designs, device and torch thread count.
The reference runs in a child process through ../shared/bench/craft_reference.py (set-up:
`pip install --no-deps craft-xai==0.0.3` into the venv); `concepts` runs in this process
through `run_pipeline` (extract -> factorize -> importance; atlas and exports off, as the
reference has neither).

Printed: both totals and the per-stage split, the ratio, the NMF relative error of both
dictionaries on the same rows (ours: the cached crop activations; the reference's W is
applied to those rows by non-negative least squares, which is the best its dictionary can do
there), and the agreement of the two importance rankings (concepts matched one to one by the
Hungarian algorithm on cosine similarity, then Spearman's rho of the Sobol importances and the
top-3 overlap).

    python benchmarks/end_to_end.py                          # 1 class x 50 photos, CPU
    python benchmarks/end_to_end.py --all-val50 --device cuda   # 500 photos as one folder, GPU

`concepts` runs once per precision in --precisions (default fp32 and bf16, each in a fresh run folder), the
reference once, in fp32 as it is written.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
VAL50 = SHARED / "data" / "imagenette" / "val50"
REFERENCE = SHARED / "bench" / "craft_reference.py"


def imagenet_index(wnid: str) -> int:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return int(info.label_names().index(wnid))


def make_folder(tmp: Path, wnid: str, n: int, all_val50: bool) -> tuple[Path, str, int]:
    """IMAGES/<class>/ of symlinks to the chosen photos; returns (images root, class id, index)."""
    if all_val50:
        files = sorted(p for d in sorted(VAL50.iterdir()) if d.is_dir() for p in d.iterdir() if p.is_file())
        class_id = "val50_all"
        index = imagenet_index(wnid)
    else:
        files = sorted(p for p in (VAL50 / wnid).iterdir() if p.is_file())[:n]
        class_id = wnid
        index = imagenet_index(wnid)
    folder = tmp / "images" / class_id
    folder.mkdir(parents=True)
    for path in files:
        (folder / path.name).symlink_to(path.resolve())
    return folder.parent, class_id, index


def run_reference(folder: Path, index: int, n: int, args, out_npz: Path) -> dict:
    cmd = [sys.executable, str(REFERENCE), str(folder), "--class-index", str(index), "--max-images", str(n),
           "--concepts", str(args.concepts), "--patch-size", str(args.patch_size), "--designs", str(args.designs),
           "--threads", str(args.threads), "--device", args.device, "--save", str(out_npz)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"reference failed:\n{done.stderr[-3000:]}")
    text = done.stdout
    result = json.loads(text[text.index("{"):])
    result["wall_s"] = wall
    return result


def run_concepts(images: Path, class_id: str, index: int, n: int, args, run: Path, precision: str) -> dict:
    from concepts.pipeline import load_config, run_pipeline
    from concepts.pipeline.tasks import release_models
    from concepts.runtime import configure_process

    configure_process(threads=args.threads)  # a benchmark is an entry point: the CLI's process set-up
    labels = run.parent / "labels.csv"
    labels.write_text(f"{class_id},{index}\n")
    cfg = load_config(None, {
        "out": str(run), "data.images": str(images), "data.classes": [class_id], "data.max_images": n,
        "data.labels": str(labels), "model.device": args.device, "model.precision": precision,
        "extract.patch_size": args.patch_size, "extract.mode": "crops", "extract.batch_size": args.batch_size,
        "factorize.method": "nmf", "factorize.n_concepts": args.concepts, "factorize.seed": 0,
        "importance.methods": args.methods.split(","), "importance.designs": args.designs,
        "executor.threads": args.threads, "atlas.enabled": False, "export.enabled": False,
    })
    import importlib

    for module in ("concepts.extract", "concepts.factorize", "concepts.importance"):
        importlib.import_module(module)  # imports are not timed, as the reference's are not (its total starts
        # after its imports, and after its model and its photos are loaded)
    release_models()  # each run loads the model itself, as a fresh process would
    t0 = time.perf_counter()
    result = run_pipeline(cfg, progress=False)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "seconds": dict(result.seconds), "load_s": result.load_s,
            "peak_rss_mb": result.peak_rss_mb}


def nnls_error(rows: np.ndarray, bank: np.ndarray) -> float:
    """Relative error ||A - U W|| / ||A|| with U >= 0 the least-squares optimum for the fixed bank W."""
    from scipy.optimize import nnls

    wt = bank.T.astype(np.float64)
    residual = 0.0
    for row in rows.astype(np.float64):
        _, r = nnls(wt, row)
        residual += r * r
    return float(np.sqrt(residual) / np.linalg.norm(rows))


def compare(run: Path, class_id: str, ref: dict, ref_npz: Path) -> dict:
    from scipy.optimize import linear_sum_assignment
    from scipy.stats import spearmanr

    from concepts.schema import open_run

    folder = open_run(run)
    with folder.activations(class_id) as cache:
        rows = cache.rows(np.float32)
    concepts = folder.concepts(class_id)
    ours_w = concepts.components.astype(np.float64)
    ours_u = concepts.coefficients.astype(np.float64)
    attrs = concepts.attrs
    ours_err = float(np.linalg.norm(rows - ours_u @ ours_w) / np.linalg.norm(rows))
    saved = np.load(ref_npz)
    ref_w = saved["W"].astype(np.float64)
    ref_err_on_our_rows = nnls_error(rows, ref_w)
    ours_imp = np.asarray(folder.importance(class_id, maps=False).methods["sobol"].class_importance, np.float64)
    ref_imp = np.asarray(saved["importances"], dtype=np.float64)
    a = ours_w / np.linalg.norm(ours_w, axis=1, keepdims=True)
    b = ref_w / np.linalg.norm(ref_w, axis=1, keepdims=True)
    cos = a @ b.T
    i, j = linear_sum_assignment(-cos)
    rho = float(spearmanr(ours_imp[i], ref_imp[j]).statistic)
    top3_ours = set(np.argsort(ours_imp)[::-1][:3].tolist())
    top3_ref_matched = {int(i[list(j).index(k)]) for k in np.argsort(ref_imp)[::-1][:3]}
    return {
        "rows": list(rows.shape), "reference_rows": ref["crops"],
        "nmf_error_ours": ours_err, "nmf_error_ours_attr": attrs.get("rel_error"),
        "nmf_error_reference_on_our_rows": ref_err_on_our_rows,
        "nmf_error_reference_own": ref["nmf_relative_error"],
        "matched_cosine_mean": float(cos[i, j].mean()),
        "ranking_spearman": rho, "top3_overlap": len(top3_ours & top3_ref_matched),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wnid", default="n01440764", help="Imagenette class (default: tench)")
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--all-val50", action="store_true", help="all 500 val50 photos as one folder (GPU run)")
    p.add_argument("--concepts", type=int, default=10)
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--designs", type=int, default=32)
    p.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    p.add_argument("--device", default="cpu")
    p.add_argument("--precisions", default="fp32,bf16", help="concepts runs once per precision")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--methods", default="sobol", help="importance methods for concepts (the reference: sobol)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--keep", help="keep the temp folder here")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args()
    if not VAL50.is_dir():
        raise SystemExit(f"shared photos not found at {VAL50}")
    if not args.skip_reference and not REFERENCE.is_file():
        raise SystemExit(f"reference script not found at {REFERENCE}")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="concepts-e2e-"))
    tmp.mkdir(parents=True, exist_ok=True)
    images, class_id, index = make_folder(tmp, args.wnid, args.images, args.all_val50)
    n = len(list((images / class_id).iterdir()))
    print(f"{n} photos of {class_id} (class index {index}), r = {args.concepts}, patch {args.patch_size}, "
          f"{args.designs} designs, device {args.device}, {args.threads} threads", flush=True)

    figures = {"photos": n, "class_id": class_id, "concepts": {}}
    for precision in args.precisions.split(","):
        ours = run_concepts(images, class_id, index, n, args, tmp / f"run-{precision}", precision)
        split = ", ".join(f"{k} {v:.2f}s" for k, v in ours["seconds"].items())
        print(f"concepts {precision}: total {ours['wall_s']:.2f}s (model load {ours['load_s']:.2f}s inside; {split}); "
              f"peak RSS {ours['peak_rss_mb']:.0f} MiB", flush=True)
        figures["concepts"][precision] = ours
    if not args.skip_reference:
        ref = run_reference(images / class_id, index, n, args, tmp / "reference.npz")
        s = ref["seconds"]
        print(f"reference : total {s['total_s']:.2f}s (fit {s['fit_s']:.2f}s, transform {s['transform_s']:.2f}s, "
              f"importance {s['importance_s']:.2f}s; + image/model load {s['load_s']:.2f}s; process wall "
              f"{ref['wall_s']:.2f}s)")
        figures["reference"] = ref
        for precision, ours in figures["concepts"].items():
            total = ours["wall_s"]
            ratio = s["total_s"] / total
            ratio_load = (s["total_s"] + s["load_s"]) / total
            cmp = compare(tmp / f"run-{precision}", class_id, ref, tmp / "reference.npz")
            print(f"[{precision}] ratio    : concepts is {ratio:.1f}x faster (reference total without its loading) / "
                  f"{ratio_load:.1f}x (with it); concepts' total includes loading the model and decoding photos")
            print(f"[{precision}] NMF error: concepts {cmp['nmf_error_ours']:.4f} on its {cmp['rows'][0]} x "
                  f"{cmp['rows'][1]} rows; the reference's W on the same rows {cmp['nmf_error_reference_on_our_rows']:.4f} "
                  f"(its own report on its {cmp['reference_rows'][0]} rows: {cmp['nmf_error_reference_own']:.4f})")
            print(f"[{precision}] ranking  : Spearman {cmp['ranking_spearman']:.3f} over concepts matched by cosine "
                  f"(mean matched cosine {cmp['matched_cosine_mean']:.3f}); top-3 overlap {cmp['top3_overlap']}/3")
            ours.update(ratio=ratio, ratio_with_load=ratio_load, comparison=cmp)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
