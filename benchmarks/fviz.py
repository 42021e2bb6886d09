#!/usr/bin/env python3
"""MACO feature visualisation: our vectorised implementation against horama (the MACO author's PyTorch toolbox),
the own-concept check on the ten Imagenette classes, the demo's settings and the paper's settings.

    python benchmarks/fviz.py anchor      [--class n01440764 --concepts 10 --steps 64 --crops 4 --repeats 2]
    python benchmarks/fviz.py paper       [--measure 4 --concepts 10]
    python benchmarks/fviz.py excitation  [--classes all --steps 96 --crops 2]
    python benchmarks/fviz.py demo        [--repeats 2]
    python benchmarks/fviz.py subconcepts [--class n01440764 --sub-concepts 4 --steps 64 --crops 2 --repeats 2]

Runs are built once in --work (default /tmp/fviz-bench): extract (50 photos per class of
../shared/data/imagenette/val50, crops mode) and NMF with 10 concepts, with the bundled EfficientNet-Lite0.

anchor: the same model (cut at its last feature map, weights frozen for both), the same objective (mean over the
step's crops of dot(a, v) * max(cos(a, v), 0.1)^2, a the pooled activation), the same steps, crops per step, crop
sides, image size and magnitude spectrum (ours, estimated on the class's photos, written where horama reads its
spectrum file), each with its own learning rate (horama: NAdam 1.0 on a standardised phase; ours: NAdam 0.1 on the
phase in radians); horama's value range is set to the model-space image of [0, 1] so that its images are valid
pixels. horama optimises one concept per call; ours all of them in one batch (and, for reference, one at a time).
Both images are measured by the same code: the objective on a fixed grid of crops (no noise), the own coefficient
(the NMF transform of the pooled activation) and its percentile among the class's crops. Timings repeat
(--repeats) and are printed as ranges, with the machine's load average.

subconcepts: the stage's wall time on one class of a recursive run (10 concepts, each split into --sub-concepts
sub-concepts, depth 1) with and without the sub-concepts' images (``subconcepts: false``), alternated in each repeat,
at the demo's settings but --steps and --crops; prints both and their ratio per repeat.

paper: seconds per concept at the settings of horama's `maco` defaults (1000 steps, 6 crops of 0.25-0.30 of a
1280-pixel image), from the marginal cost of steps (time of 2N steps minus N steps), extrapolated to 1000 steps.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import span as common_span  # noqa: E402 (benchmarks/common.py)

ROOT = Path(__file__).resolve().parents[1]
VAL50 = next((p / "shared" / "data" / "imagenette" / "val50" for p in ROOT.parents
              if (p / "shared" / "data" / "imagenette" / "val50").is_dir()), ROOT.parent / "shared" / "data")


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def span(values) -> str:
    return common_span(values, ".2f")


def prepare(work: Path, classes: list[str], n_images: int, n_concepts: int) -> Path:
    """The benchmark's run folder: extract + NMF for ``classes`` (reused when present)."""
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run
    from concepts.schema import stage_path

    run = work / f"run-{n_images}-{n_concepts}"
    todo = [c for c in classes if not stage_path(run, "factorize", c).exists()]
    if todo:
        extract_run(VAL50, run, classes=todo, max_images=n_images, workers=0, progress=False)
        factorize_run(run, method="nmf", n_concepts=n_concepts, seed=0, classes=todo, progress=False)
    return run


class ClassSetup:
    """One class of the run: model split, preprocessing, bank, its estimator, the reference coefficients and the
    spectrum estimated on the class's photos."""

    def __init__(self, run: Path, class_id: str):
        from concepts.factorize.stage import estimator_from_record
        from concepts.fviz.compute import photo_spectrum
        from concepts.models import ModelCache
        from concepts.schema import RunFolder

        folder = RunFolder(run)
        with folder.activations(class_id) as cache:
            self.attrs = dict(cache.attrs)
            paths = [cache.images["path"][i] for i in cache.kept]
        self.split = ModelCache("cpu").for_artefact(self.attrs)
        self.prep = self.split.preprocessing
        record = folder.concepts(class_id)
        self.components = record.components
        self.reference = record.coefficients
        self.estimator = estimator_from_record(record)
        self.spectrum = photo_spectrum(paths, self.prep, 64)
        self.class_index = int(self.attrs["class_index"])

    def measure(self, maco, images: np.ndarray, concepts: list[int]) -> dict:
        """Objective, own coefficient and percentile of images (K, N, N, 3) uint8, image i made for concepts[i]."""
        from concepts.fviz.maco import evaluate
        from concepts.fviz.objectives import Target

        targets = [Target("concept", k) for k in concepts]
        objective = maco.objective(self.split, targets, self.components, self.prep)
        measured = evaluate(objective, images, maco.eval_scale, self.prep.input_size)
        coef = np.asarray(self.estimator.transform(measured.pooled), np.float32)
        own = np.array([coef[i, k] for i, k in enumerate(concepts)])
        pct = np.array([100 * (self.reference[:, k] < own[i]).mean() for i, k in enumerate(concepts)])
        p99 = np.percentile(self.reference, 99, axis=0)
        excited = np.array([own[i] > p99[k] and coef[i].argmax() == k for i, k in enumerate(concepts)])
        return {"objective": measured.score, "own": own, "percentile": pct, "excited": excited}


def ours(setup: ClassSetup, concepts: list[int], *, batch: int, **settings):
    from concepts.fviz.maco import Maco
    from concepts.fviz.objectives import Target

    maco = Maco(batch=batch, **settings)
    t0 = time.perf_counter()
    result = maco.visualize(setup.split, [Target("concept", k) for k in concepts], setup.components,
                            setup.spectrum, setup.prep)
    return maco, result.images, time.perf_counter() - t0


def horama_images(setup: ClassSetup, concepts: list[int], *, steps: int, crops: int, image_size: int,
                  crop_min: float, crop_max: float, noise: float):
    """horama.maco for each concept (one call each), with our spectrum, objective and value range."""
    import torch
    import horama
    from concepts.fviz.maco import Maco, input_gradients_only

    scorer = Maco(power=2.0, floor=0.1).objective(setup.split, [], None, setup.prep)
    mean, std = np.asarray(setup.prep.mean), np.asarray(setup.prep.std)
    low, high = float(((0 - mean) / std).mean()), float(((1 - mean) / std).mean())
    # horama draws box sides in [b, 2b - a] for box_size=(a, b) (its code adds the range to the upper bound)
    box = (2 * crop_min - crop_max, crop_min)
    images, seconds = [], 0.0
    folder = tempfile.mkdtemp()
    np.save(Path(folder) / "spectrum_decorrelated.npy", setup.spectrum.magnitude)
    here = os.getcwd()
    os.chdir(folder)  # horama reads ./spectrum_decorrelated.npy (and would download it otherwise)
    try:
        with input_gradients_only(setup.split), contextlib.redirect_stderr(open(os.devnull, "w")):
            for k in concepts:
                v = torch.as_tensor(setup.components[k])

                def objective(x, v=v):
                    a = setup.split.positions(setup.split.g(x)).mean(dim=1)
                    return scorer.direction_score(a, v[None].expand_as(a)).mean()

                torch.manual_seed(k)
                t0 = time.perf_counter()
                image, _alpha = horama.maco(objective, total_steps=steps, learning_rate=1.0, image_size=image_size,
                                            model_input_size=setup.prep.input_size, noise=noise / std.mean(),
                                            values_range=(low, high), crops_per_iteration=crops, box_size=box,
                                            device="cpu")
                seconds += time.perf_counter() - t0
                pixels = (image.detach().numpy() * std[:, None, None] + mean[:, None, None]).clip(0, 1)
                images.append((pixels.transpose(1, 2, 0) * 255).round().astype(np.uint8))
    finally:
        os.chdir(here)
    return np.stack(images), seconds


def cmd_anchor(args) -> None:
    run = prepare(args.work, [args.class_id], 50, 10)
    setup = ClassSetup(run, args.class_id)
    concepts = list(range(min(args.concepts, len(setup.components))))
    k = len(concepts)
    settings = dict(steps=args.steps, crops=args.crops, image_size=args.image_size, crop_min=args.crop_min,
                    crop_max=args.crop_max, noise=args.noise)
    print(f"anchor: class {args.class_id}, {k} concepts, {json.dumps(settings)}, torch threads {args.threads}")
    rows = {"ours (batch of all)": [], "ours (one at a time)": [], "horama": []}
    measured = {}
    for rep in range(args.repeats):
        maco, images, sec = ours(setup, concepts, batch=k, lr=0.1, **settings)
        rows["ours (batch of all)"].append(sec / k)
        measured["ours (batch of all)"] = setup.measure(maco, images, concepts)
        if args.single:
            _, images1, sec1 = ours(setup, concepts[: args.single], batch=1, lr=0.1, **settings)
            rows["ours (one at a time)"].append(sec1 / args.single)
        himages, hsec = horama_images(setup, concepts, **settings)
        rows["horama"].append(hsec / k)
        measured["horama"] = setup.measure(maco, himages, concepts)
        print(f"  repeat {rep + 1}: ours {sec / k:.2f} s/concept, horama {hsec / k:.2f} s/concept (load {load()})",
              flush=True)
        if args.save:
            from PIL import Image

            out = Path(args.save)
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate([np.concatenate(list(images), 1), np.concatenate(list(himages), 1)],
                                           0)).save(out / f"anchor-{args.class_id}.png")
    print(f"\n{'':22s} {'s/concept':>12s} {'objective':>10s} {'own pct':>8s} {'excited':>8s}")
    for name, values in rows.items():
        if not values:
            continue
        m = measured.get(name)
        extra = (f" {m['objective'].mean():10.1f} {np.median(m['percentile']):8.1f} "
                 f"{int(m['excited'].sum()):>4d}/{k}") if m else ""
        print(f"{name:22s} {span(values):>12s}{extra}")
    ours_m, hor_m = measured["ours (batch of all)"], measured["horama"]
    speed = [h / o for h, o in zip(rows["horama"], rows["ours (batch of all)"])]
    print(f"\nratios (ours batched vs horama): speed per concept {span(speed)}x; objective "
          f"{ours_m['objective'].mean() / hor_m['objective'].mean():.2f}x (mean), ours >= horama on "
          f"{int((ours_m['objective'] >= hor_m['objective']).sum())}/{k} concepts; own-concept percentile median "
          f"{np.median(ours_m['percentile']):.1f} vs {np.median(hor_m['percentile']):.1f}")
    if rows["ours (one at a time)"]:
        print(f"batching: ours one at a time {span(rows['ours (one at a time)'])} s/concept vs batched "
              f"{span(rows['ours (batch of all)'])}")


def cmd_paper(args) -> None:
    run = prepare(args.work, [args.class_id], 50, 10)
    setup = ClassSetup(run, args.class_id)
    k = min(args.concepts, len(setup.components))
    concepts = list(range(k))
    paper = dict(crops=6, image_size=1280, crop_min=0.25, crop_max=0.30, noise=0.025)
    n = args.measure
    print(f"paper settings: 1000 steps, {json.dumps(paper)}; marginal cost of steps {n}..{2 * n}, "
          f"torch threads {args.threads}")
    mine, theirs = [], []
    for rep in range(args.repeats):
        t = [ours(setup, concepts, batch=k, lr=0.1, steps=s, **paper)[2] for s in (n, 2 * n)]
        mine.append(max(t[1] - t[0], 1e-9) / n * 1000 / k)
        h = [horama_images(setup, concepts[:1], steps=s, **paper)[1] for s in (n, 2 * n)]
        theirs.append(max(h[1] - h[0], 1e-9) / n * 1000)
        print(f"  repeat {rep + 1}: ours {mine[-1]:.0f} s/concept ({k} together), horama {theirs[-1]:.0f} "
              f"s/concept (load {load()})", flush=True)
    print(f"\nseconds per concept at 1000 steps: ours {span(mine)} (batch of {k}), horama {span(theirs)}; "
          f"speed ratio {span([h / m for h, m in zip(theirs, mine)])}x")


def cmd_excitation(args) -> None:
    from concepts.fviz import fviz_run, load_fviz

    classes = sorted(p.name for p in VAL50.iterdir() if p.is_dir()) if args.classes == "all" else \
        args.classes.split(",")
    run = prepare(args.work, classes, 50, 10)
    settings = dict(steps=args.steps, crops=args.crops, image_size=args.image_size, crop_min=args.crop_min,
                    crop_max=args.crop_max, noise=args.noise, logit=False)
    print(f"excitation: {len(classes)} classes x 10 concepts, {json.dumps(settings)}")
    total, passed = 0, 0
    for class_id in classes:
        t0 = time.perf_counter()
        fviz_run(run, classes=[class_id], overwrite=True, progress=False, device="cpu", **settings)
        record = load_fviz(run, class_id)
        ok = record.excites()
        total += len(ok)
        passed += int(ok.sum())
        print(f"  {class_id} {record.attrs['class_name']!r:24s} {int(ok.sum())}/{len(ok)}  percentiles "
              f"{np.round(record.percentile[:len(ok)], 1).tolist()}  argmax ok "
              f"{int(sum(record.coefficients[i].argmax() == i for i in range(len(ok))))}/{len(ok)}  "
              f"{time.perf_counter() - t0:.0f} s (load {load()})", flush=True)
        if args.save:
            from PIL import Image

            out = Path(args.save)
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate(list(record.concept_images()), 1)).save(out / f"{class_id}.png")
    print(f"\nshare of concepts that excite their own concept (above the class's 99th percentile and argmax): "
          f"{passed}/{total} = {passed / max(total, 1):.1%}")


def cmd_demo(args) -> None:
    from concepts.fviz import fviz_run, load_fviz
    from concepts.pipeline.demo import DEMO_FVIZ

    run = prepare(args.work, [args.class_id], 50, 10)
    settings = {k: v for k, v in DEMO_FVIZ.items() if k != "enabled"}
    print(f"demo settings {json.dumps(settings)} on {args.class_id} (10 concepts + the logit), torch threads "
          f"{args.threads}")
    walls = []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        fviz_run(run, classes=[args.class_id], overwrite=True, progress=False, device="cpu", **settings)
        walls.append(time.perf_counter() - t0)
        record = load_fviz(run, args.class_id)
        print(f"  repeat {rep + 1}: {walls[-1]:.0f} s for the class ({record.attrs['seconds']:.0f} s in the "
              f"stage), {int(record.excites().sum())}/10 excited (load {load()})", flush=True)
    print(f"\ndemo settings: {span(walls)} s per class of 10 concepts + logit (target: < 120 s)")


def cmd_subconcepts(args) -> None:
    from concepts.factorize import factorize_run
    from concepts.fviz import fviz_run, load_fviz
    from concepts.pipeline.demo import DEMO_FVIZ
    from concepts.schema import RunFolder

    run = prepare(args.work, [args.class_id], 50, 10)
    factorize_run(run, method="nmf", n_concepts=10, seed=0, classes=[args.class_id], recursive=True,
                  sub_concepts=args.sub_concepts, overwrite=True, progress=False)
    tree = RunFolder(run).concept_tree(args.class_id)
    settings = {k: v for k, v in DEMO_FVIZ.items() if k != "enabled"} | {"steps": args.steps, "crops": args.crops}
    print(f"settings {json.dumps(settings)} on {args.class_id}: 10 concepts + the logit, {tree.n_subconcepts} "
          f"sub-concepts; torch threads {args.threads}")
    walls: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(args.repeats):
        for with_subs in (False, True):
            t0 = time.perf_counter()
            fviz_run(run, classes=[args.class_id], overwrite=True, progress=False, device="cpu",
                     subconcepts=with_subs, **settings)
            walls[with_subs].append(time.perf_counter() - t0)
            record = load_fviz(run, args.class_id)
            extra = (f", {int(record.subconcepts.excites().sum())}/{len(record.subconcepts)} sub-concepts excited"
                     if record.subconcepts is not None else "")
            print(f"  repeat {rep + 1}, sub-concepts {'on ' if with_subs else 'off'}: {walls[with_subs][-1]:.1f} s, "
                  f"{int(record.excites().sum())}/10 concepts excited{extra} (load {load()})", flush=True)
    ratios = [b / a for a, b in zip(walls[False], walls[True])]
    print(f"\nwithout sub-concepts: {span(walls[False])} s; with: {span(walls[True])} s; ratio {span(ratios)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["anchor", "paper", "excitation", "demo", "subconcepts"])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fviz-bench")
    parser.add_argument("--class", dest="class_id", default="n01440764")
    parser.add_argument("--classes", default="all")
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--crop-min", type=float, default=0.55)
    parser.add_argument("--crop-max", type=float, default=0.7)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--measure", type=int, default=4, help="paper: steps N of the marginal cost (N..2N)")
    parser.add_argument("--single", type=int, default=0, help="anchor: also time ours one concept at a time")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sub-concepts", type=int, default=4, help="subconcepts: sub-concepts per concept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", default=None, help="folder for PNGs of the images")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from concepts.runtime import configure_process

    configure_process()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    {"anchor": cmd_anchor, "paper": cmd_paper, "excitation": cmd_excitation, "demo": cmd_demo,
     "subconcepts": cmd_subconcepts}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
