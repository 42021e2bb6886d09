"""`concepts demo`: the whole pipeline offline on photos shipped with scikit-image (or your own)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline offline on bundled photos (or --images DIR)",
                       description="Extract, factorize, rank concepts, build the atlas and the exports on six "
                                   "classes of real photos that ship with scikit-image and scikit-learn (one photo "
                                   "per class, seen as several views), with the bundled EfficientNet-Lite0. "
                                   "Nothing is downloaded.")
    p.add_argument("--out", default="concepts-demo", help="the run folder (default: ./concepts-demo)")
    p.add_argument("--images", default=None, help="your own class folders instead of the bundled photos")
    p.add_argument("--concepts", type=int, default=10, help="concepts per class")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--fviz", action=argparse.BooleanOptionalAction, default=True,
                   help="make the feature visualisations (MACO, ~1 minute per class on a 2-core CPU; default on)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..pipeline.demo import run_demo

    run_demo(args.out, images=args.images, n_concepts=args.concepts, max_images=args.max_images,
             device=args.device, progress=not args.quiet, fviz=args.fviz)
    return 0
