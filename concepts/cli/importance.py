"""``concepts importance RUN``: stage 3, concept importance, maps and fidelity per class."""
from __future__ import annotations

import argparse

from .common import add_classes


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "importance",
        help="estimate concept importance (Sobol, gradient x input, occlusion), maps and fidelity",
        description="Stage 3: for every class with concepts, write RUN/importance/<class>.h5 with per-image and "
        "class-level importances, concept maps and fidelity metrics. Finished classes are skipped on a rerun.",
    )
    parser.add_argument("run", metavar="RUN", help="run folder (with activations/ and concepts/)")
    parser.add_argument("--method", action="append", metavar="NAME",
                        help="sobol, gradient or occlusion (repeat or comma-separate; default: all three)")
    parser.add_argument("--designs", type=int, default=32, help="QMC designs for Sobol (N(r+2) evaluations; default 32)")
    parser.add_argument("--sampler", default="halton",
                        choices=["halton", "halton-scrambled", "sobol", "sobol-scrambled", "random"],
                        help="mask sequence for Sobol (default: unscrambled Halton, as CRAFT)")
    parser.add_argument("--estimator", default="jansen", choices=["jansen", "sobol2007"],
                        help="total-order Sobol estimator (default jansen)")
    add_classes(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of scrambled sequences and random subsets")
    parser.add_argument("--no-residual", dest="residual", action="store_false",
                        help="perturb (U*M)W alone instead of adding the residual A - UW back (CRAFT's choice)")
    parser.add_argument("--exact", default="auto", choices=["auto", "off", "always"],
                        help="closed forms for a global-average-pool + linear head (default auto)")
    parser.add_argument("--score", default="logit", choices=["logit", "probability"],
                        help="score of the fidelity metrics (default logit)")
    parser.add_argument("--steps", type=int, default=None, help="C-Deletion/Insertion steps (default: r)")
    parser.add_argument("--correlation", default="spearman", choices=["spearman", "pearson"],
                        help="C-muFidelity correlation (default spearman)")
    parser.add_argument("--batch-size", type=int, default=64, help="perturbed activations per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    parser.add_argument("--overwrite", action="store_true", help="redo classes made with another configuration")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..importance import importance_run

    paths = importance_run(
        args.run, methods=args.method, designs=args.designs,
        classes=args.classes, device=args.device, overwrite=args.overwrite, progress=args.progress,
        sampler=args.sampler, estimator=args.estimator, seed=args.seed, residual=args.residual, exact=args.exact,
        score=args.score, steps=args.steps, correlation=args.correlation, batch_size=args.batch_size,
    )
    print(f"importance: {len(paths)} class file(s) in {args.run}/importance")
    return 0
