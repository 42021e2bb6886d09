#!/usr/bin/env python3
"""Concept importance: the general path against its floor (ViT-Tiny), and each method against the reference
CRAFT Sobol step (EfficientNet-Lite0).

Case ``vit`` (the general path: a head that is not global-average-pool + linear): ``vit_tiny_patch16_224`` with
random weights (``pretrained=False``), cut before its last block (so ``h`` = one block + norm + classifier), 50
photos of one class, Semi-NMF with r = 10, the stage's default settings (32 designs; Sobol, gradient x input,
occlusion and the fidelity metrics). Printed:

* ``h``'s throughput (evaluations/s) at each batch size on masked activations and its best;
* the floor: the evaluations of ``h`` the estimators need (N(r+2) per image for Sobol, r+1 for occlusion, a forward
  and a backward counted as 3 for gradient x input, 2 for the reconstruction check, the distinct masks of the
  fidelity metrics) divided by that best throughput;
* the stage's time (``importance_run``, model loading included), its two passes (importances; fidelity) and the
  evaluation count, and the old path (the whole model through forward hooks, every metric on its own) on a few
  images, with the largest difference between the two.

Case ``lite0``: 50 Imagenette photos of one class (default: tench), the bundled EfficientNet-Lite0 cut at its last
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

    python benchmarks/importance.py                  # both cases, CPU (+ CUDA when present)
    python benchmarks/importance.py --case vit --repeat 3
    python benchmarks/importance.py --device cuda --images 50 --wnid n03000684 --class-index 491

No GPU was lent to the session that wrote the ViT case: ``--device cuda`` runs it on a GPU, untested.
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

from common import VAL50, Clock, load, span  # noqa: E402 (benchmarks/common.py)


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

def h_throughput(split, U, W, res, prefix, batch_sizes, seconds: float = 2.0) -> dict[int, float]:
    """Evaluations/s of ``split.h_positions`` on masked activations ``(U ⊙ m) W + R`` of one image, per batch size
    (the activations are built once per batch size: only ``h`` is timed)."""
    gen = torch.Generator().manual_seed(0)
    rates = {}
    for bs in batch_sizes:
        masks = torch.rand(bs, U.shape[-1], generator=gen).to(U)
        pos = (U[:1] * masks[:, None, :]) @ W + res[:1]
        pre = prefix[:1].expand(bs, -1, -1).contiguous() if prefix is not None else None
        with torch.inference_mode():
            split.h_positions(pos, pre)  # warm-up
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds or done == 0:
                split.h_positions(pos, pre)
                done += bs
            rates[bs] = done / (time.perf_counter() - start)
    return rates


def factored_throughput(split, U, W, res, prefix, batch_sizes, seconds: float = 2.0) -> dict[int, float]:
    """Evaluations/s of the factored class-token head per batch size (empty when the split has none)."""
    head = split.factored_head(U[:1], W, res[:1], prefix[:1] if prefix is not None else None)
    if head is None:
        return {}
    rates = {}
    for bs in batch_sizes:
        masks = torch.rand(bs, U.shape[-1], generator=torch.Generator().manual_seed(0)).to(U)
        images = torch.zeros(bs, dtype=torch.long, device=U.device)
        with torch.inference_mode():
            head(images, masks)
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds or done == 0:
                head(images, masks)
                done += bs
        rates[bs] = done / (time.perf_counter() - start)
    return rates


def fidelity_evaluations(record, settings, n_concepts: int, kept: int) -> int:
    """Distinct (image, mask) pairs the fidelity metrics ask for, given the stage's importances."""
    from types import SimpleNamespace

    from concepts.importance.compute import fidelity_masks
    from concepts.importance.perturb import MaskRecorder

    recorder = MaskRecorder(kept, n_concepts)
    results = {name: SimpleNamespace(class_importance=m.class_importance,
                                     per_image=m.per_image[record.kept]) for name, m in record.methods.items()}
    fidelity_masks(recorder, SimpleNamespace(results=results), settings, 0)
    return len(recorder.pairs()[0])


def prepare_vit_run(run: Path, args) -> None:
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run
    from concepts.settings import RunConfig

    semi = RunConfig().replace(**{"factorize.method": "semi_nmf"})  # signed ViT activations: no NMF warning
    with Clock() as c:
        extract_run(str(VAL50), str(run), config=semi, model="vit_tiny_patch16_224", pretrained=False, mode="patches",
                    classes=[args.wnid], max_images=args.images, device=args.device or "cpu",
                    precision=args.precision, progress=False)
        factorize_run(run, method="semi_nmf", n_concepts=args.concepts, device=args.device or "cpu", progress=False)
    print(f"prepared: ViT-Tiny (random weights) activations of {args.images} photos, Semi-NMF r = {args.concepts} "
          f"({c.seconds:.1f} s)")


def run_vit(args) -> None:
    import tempfile

    from concepts.factorize.stage import estimator_from_record
    from concepts.importance import importance_run
    from concepts.importance.compute import ClassBlocks, fidelity_pass, importance_pass
    from concepts.importance.perturb import dense_only
    from concepts.models import ModelCache
    from concepts.schema import RunFolder
    from concepts.settings import ImportanceSettings

    device = args.device or "cpu"
    print(f"\n== ViT-Tiny case, device {device}, precision {args.precision}, torch threads {torch.get_num_threads()}, "
          f"{load()} ==")
    run = Path(tempfile.mkdtemp(prefix="concepts-bench-vit-")) / "run"
    prepare_vit_run(run, args)
    folder = RunFolder(run)
    cache = folder.activations(args.wnid)
    models = ModelCache(device)
    split = models.for_artefact(dict(cache.attrs))
    estimator = estimator_from_record(folder.concepts(args.wnid), device=device)
    batch = {} if args.batch_size is None else {"batch_size": args.batch_size}
    settings = ImportanceSettings(designs=args.designs, **batch)
    data = ClassBlocks(cache, estimator, settings.residual, settings.image_block)
    A, U, res, prefix = data.load(data.blocks[0])
    Ut, Wt = torch.from_numpy(U).to(device), torch.from_numpy(data.W).to(device)
    rest = torch.from_numpy(res).to(device)
    pre = torch.from_numpy(prefix).to(device) if prefix is not None else None
    n, r = len(cache.kept), data.W.shape[0]
    print(f"h: {split.head_path} path ({split.layer} cut, {split.grid[0] * split.grid[1]} positions + {split.n_prefix} "
          f"prefix token(s), D = {split.n_channels})")

    rates = h_throughput(split, Ut, Wt, rest, pre, [16, 32, 64, 128, 256, 512])
    best_bs = max(rates, key=rates.get)
    print("h throughput, evaluations/s by batch size: " + ", ".join(f"{b}: {v:.0f}" for b, v in rates.items()) +
          f"; best {rates[best_bs]:.0f} at {best_bs}")
    split.fast_head = False
    hooked = h_throughput(split, Ut, Wt, rest, pre, [best_bs], seconds=1.0)[best_bs]
    split.fast_head = True
    fact_rates = factored_throughput(split, Ut, Wt, rest, pre, [16, 64, 256, 512], seconds=1.0)
    fact = max(fact_rates.values()) if fact_rates else None
    print(f"  the same h through forward hooks on the whole model (the old path): {hooked:.0f}/s at {best_bs}; "
          f"the factored class-token head: " + (", ".join(f"{b}: {v:.0f}" for b, v in fact_rates.items())
                                                if fact_rates else "not available"))

    times, passes = [], []
    for _ in range(args.repeat):
        fresh = ModelCache(device)  # the stage loads the model, as a user's run does
        with Clock() as c:
            importance_run(run, overwrite=True, progress=False, designs=args.designs, models=fresh, **batch)
        times.append(c.seconds)
        with Clock() as c1:
            first = importance_pass(data, settings, split.h_positions, split.linear_head(), cache.class_index,
                                    tuple(cache.grid), split.device, precision=args.precision)
        with Clock() as c2:
            fidelity_pass(data, first, settings, split.h_positions, split.linear_head(), cache.class_index,
                          split.device, precision=args.precision)
        passes.append((c1.seconds, c2.seconds))
    record = folder.importance(args.wnid, maps=False)
    fid = fidelity_evaluations(record, settings, r, n)
    per_image = settings.designs * (r + 2), r + 1, 3, 2
    needed = n * sum(per_image) + fid
    floor = needed / rates[best_bs]
    print(f"evaluations of h needed: {n} images x (Sobol {per_image[0]} + occlusion {per_image[1]} + gradient "
          f"{per_image[2]} + reconstruction {per_image[3]}) + fidelity {fid} distinct masks ({fid / n:.0f} per image; "
          f"asked one metric at a time: {n * len(record.methods) * (2 * (r + 1) + settings.n_subsets + 1)}) "
          f"= {needed}")
    print(f"floor = {needed} / {rates[best_bs]:.0f} per s = {floor:.1f} s")
    print(f"stage (importance_run, model load included): {span(times)} s over {args.repeat} run(s) = "
          f"{min(times) / floor:.2f}-{max(times) / floor:.2f} x the floor (target <= 1.5)")
    first_s, fid_s = [p[0] for p in passes], [p[1] for p in passes]
    print(f"  importance pass {span(first_s)} s, fidelity pass {span(fid_s)} s "
          f"(fidelity / importance: {span([b / a for a, b in passes])}, target <= 1)")
    if fact:
        print(f"  the factored head's own floor: {needed / fact:.2f} s")

    if args.reference_images:
        small = ClassBlocks(cache, estimator, settings.residual, settings.image_block)
        small.blocks = [small.blocks[0][:args.reference_images]]
        with Clock() as fast_clock:
            fast_first = importance_pass(small, settings, split.h_positions, split.linear_head(), cache.class_index,
                                         tuple(cache.grid), split.device, fast=True)
            fidelity_pass(small, fast_first, settings, split.h_positions, split.linear_head(), cache.class_index,
                          split.device, fast=True)
        split.fast_head = False
        with Clock() as old_clock, dense_only():
            old_first = importance_pass(small, settings, split.h_positions, split.linear_head(), cache.class_index,
                                        tuple(cache.grid), split.device, fast=False)
            fidelity_pass(small, old_first, settings, split.h_positions, split.linear_head(), cache.class_index,
                          split.device, fast=False)
        split.fast_head = True
        diff = max(float(np.abs(fast_first.results[m].per_image - old_first.results[m].per_image).max())
                   for m in fast_first.results)
        k = args.reference_images
        print(f"old path (hooked whole model, dense, metrics one by one) on {k} image(s): "
              f"{old_clock.seconds / k:.1f} s per image; new path {fast_clock.seconds / k:.2f} s per image "
              f"({old_clock.seconds / fast_clock.seconds:.0f}x); largest difference of the per-image importances "
              f"{diff:.1e}")
    cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wnid", default="n01440764")
    parser.add_argument("--class-index", type=int, default=0)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--designs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--vit-batch-size", type=int, default=None,
                        help="ViT case: the stage's batch size (default: the importance settings' default)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu, then cuda when present)")
    parser.add_argument("--case", default="vit,lite0", help="vit, lite0 or both (comma-separated)")
    parser.add_argument("--precision", default="fp32", help="ViT case: precision of the model (fp32, bf16)")
    parser.add_argument("--repeat", type=int, default=2, help="ViT case: repetitions of the stage")
    parser.add_argument("--reference-images", type=int, default=1,
                        help="ViT case: images run through the old path too (0: skip; ~20-90 s each on 2 cores)")
    args = parser.parse_args()
    if not VAL50.is_dir():
        sys.exit(f"Imagenette sample not found at {VAL50}")
    cases = args.case.split(",")
    if "vit" in cases:
        vit_args = argparse.Namespace(**{**vars(args), "batch_size": args.vit_batch_size})
        run_vit(vit_args)
    if "lite0" in cases:
        devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            run_device(device, args)


if __name__ == "__main__":
    main()
