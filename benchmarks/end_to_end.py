#!/usr/bin/env python3
"""End to end, `concepts` against the reference CRAFT (craft-xai 0.0.3), on the same images.

Both run in one invocation of this script, on the same photos, with the same model (bundled
EfficientNet-Lite0), r, patch size, number of Sobol designs, device and torch thread count.
The reference runs in a child process through ../shared/bench/craft_reference.py (set-up:
`pip install --no-deps craft-xai==0.0.3` into the venv); `concepts` runs in this process
through `run_pipeline` (extract -> factorize -> importance; atlas and exports off, as the
reference has neither).

Images: ``--images DIR`` is one class folder (photos inside) or a folder of class folders (each is
benchmarked on its own); without it, one Imagenette val50 class (``--wnid``). The class index is the folder's
WordNet id when it is one (``--class-index`` to give it), else the model's most frequent prediction on the class
(found by `concepts`, then given to the reference).

``--resize`` decides which pixels both tools see, the same for both:

* ``keep`` (default): `concepts`' preprocessing (shorter side to 256, bicubic, keeping the aspect ratio, centre
  crop) saved as 256 x 256 PNGs that the reference reads too (its 256 x 256 resize is then the identity and its
  centre crop the same 224 pixels);
* ``squash``: the reference's own (the whole photo resized to 256 x 256, bicubic), saved as PNGs that `concepts`
  reads (its resize is the identity, its centre crop the same);
* ``native``: each tool resizes the original photos its own way (different crops, so different rankings: on one
  dog class Spearman 0.53 native against 0.99 on the same pixels).

Printed per class: both totals and the per-stage split, the ratio, the NMF relative error of both
dictionaries on the same rows (ours: the cached crop activations; the reference's W is
applied to those rows by non-negative least squares, which is the best its dictionary can do
there), and the agreement of the two importance rankings (concepts matched one to one by the
Hungarian algorithm on cosine similarity, then Spearman's rho of the Sobol importances and the
top-3 overlap); then a summary over the classes.

    python benchmarks/end_to_end.py                                   # 1 class x 50 photos, CPU
    python benchmarks/end_to_end.py --images ~/photos/dogs --resize squash --precisions fp32
    python benchmarks/end_to_end.py --all-val50 --device cuda         # 500 photos as one folder, GPU (untested:
                                                                      # no GPU was lent to the session)

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

from common import REFERENCE, VAL50, load  # noqa: E402 (benchmarks/common.py)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
SIDE = 256  # the reference's resize, and concepts' for the bundled model (224 / 0.875)


def imagenet_index(wnid: str) -> int | None:
    from timm.data import ImageNetInfo

    names = ImageNetInfo().label_names()
    return int(names.index(wnid)) if wnid in names else None


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(args) -> list[Path]:
    """The class folders to benchmark."""
    if args.images:
        root = Path(args.images).expanduser().resolve()
        if not root.is_dir():
            raise SystemExit(f"not a folder: {root}")
        if photos(root):
            return [root]
        found = [d for d in sorted(root.iterdir()) if d.is_dir() and photos(d)]
        if not found:
            raise SystemExit(f"no photos in {root} nor in its sub-folders")
        return found
    if not VAL50.is_dir():
        raise SystemExit(f"shared photos not found at {VAL50}")
    return [VAL50 / args.wnid]


def prepare(tmp: Path, class_id: str, files: list[Path], resize: str) -> Path:
    """IMAGES/<class>/ holding the photos both tools read: symlinks (native) or 256 x 256 PNGs of the chosen
    resize (the same pixels for both)."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    folder = tmp / f"images-{resize}" / class_id
    folder.mkdir(parents=True)
    for k, path in enumerate(files):
        if resize == "native":
            (folder / path.name).symlink_to(path.resolve())
            continue
        image = Image.open(path).convert("RGB")
        if resize == "squash":
            image = image.resize((SIDE, SIDE), Image.BICUBIC)
        else:  # keep: concepts' own resize (shorter side, aspect kept) and centre crop, at 256
            image = TF.center_crop(TF.resize(image, SIDE, interpolation=InterpolationMode.BICUBIC), [SIDE, SIDE])
        image.save(folder / f"{k:05d}_{path.stem}.png")  # sorted order = the original order, for both tools
    return folder.parent


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


def run_concepts(images: Path, class_id: str, index: int | None, n: int, args, run: Path, precision: str) -> dict:
    from concepts.pipeline import load_config, run_pipeline
    from concepts.pipeline.tasks import release_models
    from concepts.runtime import configure_process

    configure_process(threads=args.threads)  # a benchmark is an entry point: the CLI's process set-up
    settings = {
        "out": str(run), "data.images": str(images), "data.classes": [class_id], "data.max_images": n,
        "model.device": args.device, "model.precision": precision,
        "extract.patch_size": args.patch_size, "extract.mode": "crops", "extract.batch_size": args.batch_size,
        "factorize.method": "nmf", "factorize.n_concepts": args.concepts, "factorize.seed": 0,
        "importance.methods": args.methods.split(","), "importance.designs": args.designs,
        "executor.threads": args.threads, "atlas.enabled": False, "export.enabled": False,
    }
    if index is not None:  # else the model's most frequent prediction on the class
        labels = run.parent / f"labels-{class_id}.csv"
        labels.write_text(f"{class_id},{index}\n")
        settings["data.labels"] = str(labels)
    cfg = load_config(None, settings)
    import importlib

    for module in ("concepts.extract", "concepts.factorize", "concepts.importance"):
        importlib.import_module(module)  # imports are not timed, as the reference's are not (its total starts
        # after its imports, and after its model and its photos are loaded)
    release_models()  # each run loads the model itself, as a fresh process would
    t0 = time.perf_counter()
    result = run_pipeline(cfg, progress=False)
    wall = time.perf_counter() - t0
    from concepts.schema import open_run

    with open_run(run).activations(class_id) as cache:
        chosen, source = int(cache.class_index), str(cache.attrs.get("class_index_source", ""))
    return {"wall_s": wall, "seconds": dict(result.seconds), "load_s": result.load_s,
            "peak_rss_mb": result.peak_rss_mb, "class_index": chosen, "class_index_source": source}


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


def one_class(source: Path, tmp: Path, args) -> dict:
    """Both tools on one class folder; prints and returns the figures."""
    class_id = source.name
    files = photos(source)[:args.max_images]
    n = len(files)
    index = args.class_index if args.class_index is not None else imagenet_index(class_id)
    images = prepare(tmp, class_id, files, args.resize)
    print(f"\n== {class_id}: {n} photos, resize {args.resize}, class index "
          f"{index if index is not None else 'from the model'}; {load()} ==", flush=True)
    figures = {"photos": n, "class_id": class_id, "resize": args.resize, "concepts": {}}
    for precision in args.precisions.split(","):
        ours = run_concepts(images, class_id, index, n, args, tmp / f"run-{class_id}-{precision}", precision)
        split = ", ".join(f"{k} {v:.2f}s" for k, v in ours["seconds"].items())
        print(f"concepts {precision}: total {ours['wall_s']:.2f}s (model load {ours['load_s']:.2f}s inside; {split}); "
              f"peak RSS {ours['peak_rss_mb']:.0f} MiB; class index {ours['class_index']} "
              f"({ours['class_index_source']})", flush=True)
        figures["concepts"][precision] = ours
        index = ours["class_index"] if index is None else index
    figures["class_index"] = index
    if args.skip_reference:
        return figures
    npz = tmp / f"reference-{class_id}.npz"
    ref = run_reference(images / class_id, index, n, args, npz)
    s = ref["seconds"]
    print(f"reference : total {s['total_s']:.2f}s (fit {s['fit_s']:.2f}s, transform {s['transform_s']:.2f}s, "
          f"importance {s['importance_s']:.2f}s; + image/model load {s['load_s']:.2f}s; process wall "
          f"{ref['wall_s']:.2f}s)")
    figures["reference"] = ref
    for precision, ours in figures["concepts"].items():
        total = ours["wall_s"]
        ratio = s["total_s"] / total
        ratio_load = (s["total_s"] + s["load_s"]) / total
        cmp = compare(tmp / f"run-{class_id}-{precision}", class_id, ref, npz)
        print(f"[{precision}] ratio    : concepts is {ratio:.1f}x faster (reference total without its loading) / "
              f"{ratio_load:.1f}x (with it); concepts' total includes loading the model and decoding photos")
        print(f"[{precision}] NMF error: concepts {cmp['nmf_error_ours']:.4f} on its {cmp['rows'][0]} x "
              f"{cmp['rows'][1]} rows; the reference's W on the same rows {cmp['nmf_error_reference_on_our_rows']:.4f} "
              f"(its own report on its {cmp['reference_rows'][0]} rows: {cmp['nmf_error_reference_own']:.4f})")
        print(f"[{precision}] ranking  : Spearman {cmp['ranking_spearman']:.3f} over concepts matched by cosine "
              f"(mean matched cosine {cmp['matched_cosine_mean']:.3f}); top-3 overlap {cmp['top3_overlap']}/3")
        ours.update(ratio=ratio, ratio_with_load=ratio_load, comparison=cmp)
    return figures


def main() -> None:
    from concepts.runtime import passive_openmp_wait

    passive_openmp_wait()  # an entry point, like the CLI: before torch is imported
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", help="a class folder, or a folder of class folders (default: Imagenette --wnid)")
    p.add_argument("--wnid", default="n01440764", help="Imagenette val50 class when --images is not given (tench)")
    p.add_argument("--max-images", type=int, default=50, help="photos per class (sorted order)")
    p.add_argument("--class-index", type=int, default=None, help="the logit explained (default: see above)")
    p.add_argument("--resize", choices=("keep", "squash", "native"), default="keep",
                   help="the pixels both tools see (see above)")
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
    if not args.skip_reference and not REFERENCE.is_file():
        raise SystemExit(f"reference script not found at {REFERENCE}")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="concepts-e2e-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if args.all_val50:
        if not VAL50.is_dir():
            raise SystemExit(f"shared photos not found at {VAL50}")
        merged = tmp / "val50_all"
        merged.mkdir()
        for path in sorted(p for d in sorted(VAL50.iterdir()) if d.is_dir() for p in photos(d)):
            (merged / f"{path.parent.name}_{path.name}").symlink_to(path.resolve())
        folders = [merged]
        args.class_index = imagenet_index(args.wnid) if args.class_index is None else args.class_index
        args.max_images = max(args.max_images, len(photos(merged)))
    else:
        folders = class_folders(args)
    print(f"{len(folders)} class(es); r = {args.concepts}, patch {args.patch_size}, {args.designs} designs, device "
          f"{args.device}, {args.threads} threads, resize {args.resize}", flush=True)
    results = [one_class(folder, tmp, args) for folder in folders]
    if not args.skip_reference and len(results) > 1:
        print("\nsummary over the classes:")
        for precision in args.precisions.split(","):
            rows = [r["concepts"][precision] for r in results]
            ratios = [r["ratio"] for r in rows]
            rho = [r["comparison"]["ranking_spearman"] for r in rows]
            print(f"  [{precision}] ratio {min(ratios):.1f}-{max(ratios):.1f}x; Spearman {min(rho):.2f}-{max(rho):.2f}; "
                  f"concepts {min(r['wall_s'] for r in rows):.1f}-{max(r['wall_s'] for r in rows):.1f} s, reference "
                  f"{min(r['reference']['seconds']['total_s'] for r in results):.1f}-"
                  f"{max(r['reference']['seconds']['total_s'] for r in results):.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
