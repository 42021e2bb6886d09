"""`concepts demo`: the whole pipeline, offline, on real photos that ship with scikit-image and scikit-learn (or
your own). One photo per class (see :mod:`concepts.datasets.demo_photos` for why, and the licences)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .run import DEMO_IMAGES, run_pipeline

#: the feature-visualisation settings of the demo (CPU settings; configs/demo.yaml states the same)
DEMO_FVIZ = {"enabled": True, "steps": 64, "crops": 2, "image_size": 384, "crop_min": 0.55, "crop_max": 0.7,
             "lr": 0.1, "noise": 0.02, "batch": 16}


def run_demo(out: str | os.PathLike = "concepts-demo", images: str | os.PathLike | None = None,
             n_concepts: int = 10, max_images: int | None = None, device: str | None = None,
             progress: bool = True, fviz: bool = True):
    """Run extract -> factorize -> importance -> fviz -> atlas -> export on the demo photos (or ``images``).

    ``fviz``: make the feature visualisations (:data:`DEMO_FVIZ`: ~1 minute per class on a 2-core CPU)."""
    from ..settings import load_config

    out = Path(out)
    overrides = {"out": str(out), "data.images": DEMO_IMAGES if images is None else str(images),
                 "factorize.n_concepts": n_concepts}
    overrides.update({f"fviz.{key}": value for key, value in DEMO_FVIZ.items()})
    overrides["fviz.enabled"] = bool(fviz)
    if max_images is not None:
        overrides["data.max_images"] = max_images
    if device is not None:
        overrides["model.device"] = device
    result = run_pipeline(load_config(None, overrides), progress=progress)
    print(f"\nconcepts demo: done in {result.total_s:.0f} s", file=sys.stderr)
    print(f"  atlas:       {out / 'atlas' / 'index.html'}", file=sys.stderr)
    print(f"  importances: {out / 'exports' / 'importances.csv'}", file=sys.stderr)
    print(f"  inspect:     concepts info {out}", file=sys.stderr)
    if images is None:
        print("  note: each demo class is views of ONE photo (no package ships several permissively licensed photos "
              "of a class): its concepts are parts of that photo. Run `concepts demo --images DIR` on your own "
              "class folders for a class-level explanation.", file=sys.stderr)
    return result
