"""``concepts evaluate RUN [RUN ...]``: compare concept extraction methods on extracted runs."""
from __future__ import annotations

import argparse
import shlex
import sys

from .common import add_classes, add_device


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare NMF, Semi-NMF, PCA, ICA, k-means, dictionary learning (and random atoms) on runs",
        description="For every class of each RUN (with activations/ from `concepts extract`), fit every method and "
        "report relative l2 error, sparsity, stability (seed and subsample refits, Hungarian-matched cosine), "
        "C-Deletion, C-Insertion, C-muFidelity and, for images made by `concepts synth`, concept recovery against "
        "the planted masks. Writes results.csv, summary.csv, plots, report.md and report.html into --out.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s); a report covers them all")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/evaluation of the first RUN)")
    parser.add_argument("--name", action="append", default=None, metavar="NAME",
                        help="data set name of each RUN in the tables (repeat; default: the folder name)")
    parser.add_argument("--methods", default=None, metavar="A,B",
                        help="comma-separated methods (default: nmf,semi_nmf,pca,ica,kmeans,dictionary,random)")
    parser.add_argument("--n-concepts", type=int, default=10, help="concepts per class (default 10)")
    parser.add_argument("--seeds", type=_ints, default=(0, 1, 2), help="refit seeds (default 0,1,2)")
    parser.add_argument("--subsamples", type=int, default=3, help="image-subsample refits (default 3)")
    parser.add_argument("--fraction", type=float, default=0.8, help="share of images per subsample (default 0.8)")
    parser.add_argument("--importance", default="sobol", choices=["sobol", "gradient", "occlusion"],
                        help="importance that ranks concepts (fidelity metrics, top concept); default sobol (CRAFT)")
    parser.add_argument("--no-residual", dest="residual", action="store_false",
                        help="perturb (U*M)W alone instead of adding the residual back")
    parser.add_argument("--max-rows", type=int, default=20000, help="at most N fitting rows per class (default 20000)")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="recovery: positions weaker than this share of the strongest belong to no concept")
    add_classes(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    add_device(parser)
    parser.add_argument("--title", default="Concept extraction methods compared", help="report title")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from ..errors import ConceptsError
    from ..evaluate.compare import DEFAULT_METHODS, EvalConfig, evaluate_run
    from ..evaluate.report import summarise, write_report
    from ..runtime import thread_limit

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else DEFAULT_METHODS
    if args.name and len(args.name) != len(args.runs):
        raise ConceptsError(f"give one --name per RUN ({len(args.runs)} runs, {len(args.name)} names)")
    if not args.seeds:
        raise ConceptsError("--seeds needs at least one seed")
    config = EvalConfig(methods=methods, n_concepts=args.n_concepts, seeds=args.seeds, n_subsamples=args.subsamples,
                        fraction=args.fraction, importance=args.importance, residual=args.residual,
                        max_rows=args.max_rows, threshold=args.threshold)
    frames = []
    with thread_limit(args.threads):
        for i, run_dir in enumerate(args.runs):
            name = args.name[i] if args.name else None
            frames.append(evaluate_run(run_dir, config, classes=args.classes, dataset=name, device=args.device,
                                       progress=not args.quiet))
    frame = pd.concat(frames, ignore_index=True)
    out = Path(args.out) if args.out else Path(args.runs[0]) / "evaluation"
    command = "concepts " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["evaluate"] else None
    paths = write_report(frame, out, config=config.to_dict(), command=command, title=args.title)
    summary = summarise(frame)
    cols = [c for c in ("dataset", "method", "rel_error", "sparsity_l0", "stability", "c_deletion", "c_insertion",
                        "c_mufidelity", "key_iou", "top_is_key") if c in summary.columns]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"evaluate: {len(frame)} rows -> {paths['results']}, report {paths['markdown']}")
    return 0
