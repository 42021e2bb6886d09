"""The shared dictionary's pages at scale: time, files and bytes of its index and atom pages for K atoms and C
classes (a dataset-scope run, ``concepts factorize --scope dataset``).

Fabricates what the site build gathers class by class (each class's mass on every atom, its ``r`` concepts as atoms
with their values and ``top_k`` crops: no photo, no HDF5 file) and times :class:`DictionaryPages` (the views) and
:meth:`Pages.dictionary` (the HTML), as ``concepts atlas`` runs them after the class pages. The crops' files are
the class pages' own (not written here), so the bytes are the HTML alone.

    python benchmarks/atlas_dictionary.py --atoms 1024 4096 --classes 100 1000
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from concepts.atlas.dictionary import DictionaryPages
from concepts.atlas.render import Pages
from concepts.atlas.views import CropView, Value
from concepts.settings import AtlasSettings


def fabricate(pages: DictionaryPages, n_classes: int, r: int, top_k: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    k = pages.n_atoms
    for c in range(n_classes):
        mass = rng.gamma(0.3, 1.0, k).astype(np.float32) * (rng.random(k) < 0.5)  # sparse use of the atoms
        atoms = np.argsort(-mass, kind="stable")[:r]
        stem = f"n{c:08d}"
        concepts = []
        for j in range(r):
            crops = [CropView(image=i, rank=i + 1, coefficient=float(rng.random()), image_name=f"img_{i}.JPEG",
                              url=f"img/{stem}/r{i}.webp", page=f"classes/{stem}/image.html?i={i}", width=112,
                              height=112)
                     for i in range(top_k)]
            values = {m: Value(float(rng.random()), np.nan, np.nan, float(rng.random()), j + 1)
                      for m in ("sobol", "gradient", "occlusion")}
            concepts.append(SimpleNamespace(index=j, page=f"classes/{stem}/c{j}.html", values=values, crops=crops))
        methods = {m: SimpleNamespace(label=m) for m in ("sobol", "gradient", "occlusion")}
        view = SimpleNamespace(class_name=f"class {c}", class_id=stem, page=f"classes/{stem}.html", methods=methods,
                               concepts=concepts)
        pages.add(view, atoms, mass)


def measure(n_atoms: int, n_classes: int, r: int, top_k: int, per_page: int) -> dict:
    site = Path(tempfile.mkdtemp(prefix="atlas_dictionary_"))
    try:
        gather = DictionaryPages({"n_concepts": n_atoms, "method": "topk_sae", "classes": [], "n_rows": 0})
        t0 = time.perf_counter()
        fabricate(gather, n_classes, r, top_k)
        t1 = time.perf_counter()
        view = gather.view(per_page, top_k)
        t2 = time.perf_counter()
        Pages(site, AtlasSettings(), "concept atlas").dictionary(view)
        t3 = time.perf_counter()
        files = list((site / "dictionary").glob("*.html"))
        size = sum(p.stat().st_size for p in files)
        index = sum(p.stat().st_size for p in files if p.name.startswith("index"))
        return {"atoms": n_atoms, "classes": n_classes, "fabricate_s": t1 - t0, "views_s": t2 - t1,
                "html_s": t3 - t2, "files": len(files), "bytes": size, "index_bytes": index}
    finally:
        shutil.rmtree(site, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--concepts", type=int, default=10, help="atoms each class has as concepts")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--per-page", type=int, default=200)
    args = parser.parse_args()
    print(f"{'atoms':>6} {'classes':>7} {'views s':>8} {'html s':>7} {'ms/atom':>8} {'files':>6} {'MB':>7} "
          f"{'kB/atom':>8} {'kB/index page':>14}")
    for n_atoms in args.atoms:
        for n_classes in args.classes:
            m = measure(n_atoms, n_classes, args.concepts, args.top_k, args.per_page)
            n_index = -(-n_atoms // args.per_page)
            print(f"{n_atoms:>6} {n_classes:>7} {m['views_s']:>8.2f} {m['html_s']:>7.2f} "
                  f"{1000 * (m['views_s'] + m['html_s']) / n_atoms:>8.2f} {m['files']:>6} {m['bytes'] / 1e6:>7.1f} "
                  f"{(m['bytes'] - m['index_bytes']) / 1e3 / n_atoms:>8.1f} {m['index_bytes'] / 1e3 / n_index:>14.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
