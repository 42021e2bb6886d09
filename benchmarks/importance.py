#!/usr/bin/env python3
"""Concept importance: seconds per method, against the reference CRAFT Sobol step, same inputs.

50 Imagenette photos of one class (default: tench), the bundled EfficientNet-Lite0 cut at its last
feature map (7 x 7 x 1280), an NMF bank with r = 10 fitted on the positions, 32 Sobol designs.
Measured in one run, on the same U and W:

* the reference: CRAFT's (craft-xai 0.0.3, unmodified) ``estimate_importance`` loop, given our U
  (its own ``transform`` is bypassed so that only its Sobol step is timed), when craft is installed;
* ours: each method through the general path (the head is called on every perturbation, in chunks)
  and through the exact closed form of the global-average-pool + linear head.

Also printed: the agreement of our general Sobol path with CRAFT's numbers (same masks, same
estimator, no residual), how Sobol and gradient x input rankings agree (Spearman), how far the
32-design estimates of each QMC sampler are from the closed form, the C-Deletion of each ranking
against its reverse, and the reconstruction fidelity of the split.

    python benchmarks/importance.py                  # CPU (+ CUDA when present)
    python benchmarks/importance.py --device cuda --images 50 --wnid n03000684 --class-index 491
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
VAL50 = ROOT / ".." / "shared" / "data" / "imagenette" / "val50"


def load_inputs(wnid: str, n_images: int, device: str):
    from PIL import Image

    from concepts.models import load_split

    split, _ = load_split(device=device)
    prep = split.preprocessing
    files = sorted((VAL50 / wnid).glob("*.JPEG"))[:n_images]
    if not files:
        sys.exit(f"no images in {VAL50 / wnid}")
    x = torch.stack([prep.normalize(prep.to_tensor(Image.open(f).convert("RGB"))) for f in files])
    with torch.no_grad():
        A = torch.cat([split.positions(split.g(b.to(split.device))).cpu() for b in x.split(16)])
    return split, x, A


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out


def reference_sobol(split, U, W, class_index, designs, device):
    """CRAFT's own Sobol loop on our U / W; None when craft-xai is not installed."""
    if "tensorflow" not in sys.modules:  # craft imports tensorflow at module level, unused by the torch path
        sys.modules["tensorflow"] = types.ModuleType("tensorflow")
    try:
        from craft.craft_torch import Craft
    except Exception as exc:  # noqa: BLE001
        print(f"  reference CRAFT not available ({exc}); pip install --no-deps craft-xai==0.0.3")
        return None

    class Head(torch.nn.Module):
        def forward(self, a):  # CRAFT feeds (B, D, H, W) float32
            return split.h(a.to(split.device).permute(0, 2, 3, 1))

    n, N, r = U.shape
    h, w = split.grid
    craft = Craft(input_to_latent=lambda x: x, latent_to_logit=Head(), number_of_concepts=r, patch_size=64,
                  batch_size=64, device=str(device))
    craft.reducer = types.SimpleNamespace(components_=W)
    craft.W = W
    u_nhwc = U.reshape(n, h, w, r)
    craft.transform = lambda inputs: u_nhwc  # time only the Sobol step
    return timed(lambda: craft.estimate_importance(None, class_index, nb_design=designs))


def run_device(device: str, args) -> None:
    from scipy.stats import spearmanr
    from sklearn.decomposition import NMF

    from concepts.importance import (
        ConceptScorer,
        GradientInput,
        Occlusion,
        SobolImportance,
        c_deletion,
        reconstruction_fidelity,
    )

    print(f"\n== device {device} (torch threads {torch.get_num_threads()}) ==")
    t = time.perf_counter()
    split, _, A = load_inputs(args.wnid, args.images, device)
    n, N, D = A.shape
    print(f"model + {n} images -> positions {tuple(A.shape)} in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    nmf = NMF(args.concepts, init="nndsvda", max_iter=200, random_state=0).fit(A.reshape(-1, D).numpy())
    U = nmf.transform(A.reshape(-1, D).numpy()).reshape(n, N, -1).astype(np.float32)
    W = nmf.components_.astype(np.float32)
    print(f"NMF r={args.concepts} on {n * N} positions in {time.perf_counter() - t:.1f} s")
    Ut, Wt = torch.from_numpy(U), torch.from_numpy(W)
    residual = A - Ut @ Wt
    head, lin, c = split.h_positions, split.linear_head(), args.class_index
    kw = dict(batch_size=args.batch_size, device=device)

    ref = reference_sobol(split, U, W, c, args.designs, device)
    rows = []
    if ref is not None:
        rows.append(("reference CRAFT Sobol loop", ref[0], "-"))
    # ours, general path, CRAFT's setting (Halton, Jansen, no residual) -> comparable numbers
    sec, sob_nores = timed(lambda: SobolImportance(designs=args.designs, exact="off", **kw).attribute(Ut, Wt, head, c))
    rows.append(("sobol, general path, no residual", sec, "sampled"))
    sec, sob = timed(lambda: SobolImportance(designs=args.designs, exact="off", **kw).attribute(
        Ut, Wt, head, c, residual=residual))
    rows.append(("sobol, general path, residual", sec, "sampled"))
    sec, sob_exact = timed(lambda: SobolImportance(designs=args.designs, **kw).attribute(
        Ut, Wt, head, c, linear_head=lin, residual=residual), repeat=5)
    rows.append(("sobol, closed form (analytic)", sec, "exact"))
    sec, grad = timed(lambda: GradientInput(exact="off", **kw).attribute(Ut, Wt, head, c, residual=residual))
    rows.append(("gradient x input, general (autograd)", sec, "-"))
    sec, grad_exact = timed(lambda: GradientInput(**kw).attribute(Ut, Wt, head, c, linear_head=lin,
                                                                   residual=residual), repeat=5)
    rows.append(("gradient x input, closed form", sec, "exact"))
    sec, occ = timed(lambda: Occlusion(exact="off", **kw).attribute(Ut, Wt, head, c, residual=residual))
    rows.append(("occlusion, general path", sec, "-"))
    sec, occ_exact = timed(lambda: Occlusion(**kw).attribute(Ut, Wt, head, c, linear_head=lin, residual=residual),
                           repeat=5)
    rows.append(("occlusion, closed form", sec, "exact"))

    base = ref[0] if ref is not None else rows[0][1]
    print(f"\n{'method':40s} {'seconds':>9s} {'x faster than ref':>18s}")
    for name, s, _ in rows:
        print(f"{name:40s} {s:9.3f} {base / s:18.1f}")

    print("\nagreement")
    if ref is not None:
        diff = np.abs(np.asarray(ref[1]) - sob_nores.class_importance).max()
        print(f"  ours (general, no residual) vs CRAFT Sobol: max |diff| = {diff:.2e}")
    print(f"  gradient general vs closed form: max |diff| = {np.abs(grad.per_image - grad_exact.per_image).max():.2e}")
    print(f"  occlusion general vs closed form: max |diff| = {np.abs(occ.per_image - occ_exact.per_image).max():.2e}")
    rho = spearmanr(sob.class_importance, grad_exact.class_importance)[0]
    rho_exact = spearmanr(sob_exact.class_importance, grad_exact.class_importance)[0]
    per_image = np.nanmean([spearmanr(a, b)[0] for a, b in zip(sob.per_image, grad_exact.per_image)])
    print(f"  Spearman(Sobol 32-design, gradient x input), class level: {rho:.3f}; per image (mean): {per_image:.3f}")
    print(f"  Spearman(Sobol closed form, gradient x input), class level: {rho_exact:.3f}")
    print("  sampled Sobol (32 designs) vs closed form, mean |S_T - S_T*| over images x concepts:")
    for sampler in ("halton", "halton-scrambled", "sobol", "sobol-scrambled", "random"):
        est = SobolImportance(designs=args.designs, sampler=sampler, closed_form="design", **kw).attribute(
            Ut, Wt, head, c, linear_head=lin)
        err = np.abs(est.per_image - sob_exact.per_image).mean()
        print(f"    {sampler:18s} {err:.4f}   (sum of indices per image: {est.per_image.sum(1).mean():.2f}, exact 1)")

    scorer = ConceptScorer(Ut, Wt, head, c, linear_head=lin, residual=residual, device=device)
    print("\nC-Deletion (AUC of the class logit, lower is better): ranking / reversed")
    for name, res in (("sobol (32 designs)", sob), ("sobol closed form", sob_exact), ("gradient x input", grad_exact),
                      ("occlusion", occ_exact)):
        fwd = c_deletion(scorer, res.class_importance)["auc"]
        rev = c_deletion(scorer, -res.class_importance)["auc"]
        print(f"  {name:20s} {fwd:8.3f} / {rev:8.3f}")
    fid = reconstruction_fidelity(A, Ut, Wt, head, c, device=device)
    print(f"\nreconstruction fidelity: class logit h(A) {fid['logit_original']:.2f}, h(UW) "
          f"{fid['logit_reconstructed']:.2f} (ratio {fid['logit_ratio']:.2f}), relative error "
          f"{fid['relative_error']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wnid", default="n01440764")
    parser.add_argument("--class-index", type=int, default=0)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--designs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, then cuda when present)")
    args = parser.parse_args()
    if not VAL50.is_dir():
        sys.exit(f"Imagenette sample not found at {VAL50}")
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        run_device(device, args)


if __name__ == "__main__":
    main()
