"""`concepts factorize RUN`: stage 2, a concept dictionary per class."""
from __future__ import annotations

import sys

from ..errors import ConceptsError
from .common import add_classes, add_common, add_device


def _param(text: str) -> tuple[str, object]:
    import yaml

    if "=" not in text:
        raise ConceptsError(f"--param {text!r}: expected KEY=VALUE, e.g. --param solver=mu")
    key, value = text.split("=", 1)
    return key.strip().replace("-", "_"), yaml.safe_load(value)


def register(sub) -> None:
    from ..factorize.registry import METHODS

    p = sub.add_parser("factorize", help="learn a concept dictionary per class (NMF, Semi-NMF, PCA, ICA, ...)",
                       description="Factorise each class's cached activations A ~ U W and write "
                                   "RUN/concepts/<class>.h5: the concept bank W, the coefficients U of every "
                                   "cached row, the method's parameters and diagnostics.")
    p.add_argument("run", help="the run folder (with activations/ from `concepts extract`)")
    p.add_argument("--method", default="nmf", help=f"one of {', '.join(METHODS)} (default: nmf)")
    p.add_argument("--concepts", type=int, default=10, help="number of concepts per class (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--solver", default=None, help="NMF solver: hals (default) or mu")
    p.add_argument("--init", default=None, help="NMF init: nndsvda (default), nndsvd, nndsvdar, random")
    p.add_argument("--max-iter", type=int, default=None, help="iteration limit of the method")
    p.add_argument("--tol", type=float, default=None, help="stopping tolerance of the method")
    p.add_argument("--max-rows", type=int, default=200_000,
                   help="fit on a uniform sample of this many rows when a class has more (default: 200000); "
                        "coefficients are still computed for every row")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other parameter of the method (repeatable), e.g. --param alpha=0.2")
    add_classes(p)
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..factorize import factorize_run

    params = dict(_param(text) for text in args.param)
    for key in ("solver", "init", "max_iter", "tol"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    files = factorize_run(args.run, method=args.method, n_concepts=args.concepts, seed=args.seed,
                          classes=args.classes, device=args.device, overwrite=args.overwrite,
                          progress=not args.quiet, max_rows=args.max_rows, **params)
    print(f"factorize: {len(files)} class files in {args.run}/concepts", file=sys.stderr)
    return 0
