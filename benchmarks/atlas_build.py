"""Atlas and export at scale: build time per class and bytes per page for an N-class run.

Fabricates a contract-following run (tests/atlas/atlas_fakerun.py: real Imagenette photos when
../shared/data is there, random arrays) with N classes, then times build_atlas (site only),
write_sheets on a few classes, and export_run. Sizes are compared with a baseline measured in
the same run: linking the original photos instead of writing thumbnails.

    python benchmarks/atlas_build.py --classes 100 --images 20 --concepts 10
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "atlas"))

from atlas_fakerun import SHARED, write_class  # noqa: E402

from concepts.atlas import build_atlas, write_sheets  # noqa: E402
from concepts.export import export_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--sheets", type=int, default=5, help="classes to draw sheets for (timed)")
    parser.add_argument("--keep", default=None, help="keep the run in this folder")
    args = parser.parse_args()

    wnids = sorted(p.name for p in SHARED.iterdir() if p.is_dir()) if SHARED.is_dir() else [None]
    run = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="atlas-bench-"))
    run.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for c in range(args.classes):
        write_class(run, f"c{c:04d}", f"class {c}", c, wnid=wnids[c % len(wnids)], n_images=args.images,
                    r=args.concepts, dim=64, seed=c)
    t_fake = time.perf_counter() - t0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        index = build_atlas(run, sheets=False, progress=False)
        t_site = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_sheets(run, classes=[f"c{c:04d}" for c in range(min(args.sheets, args.classes))],
                     out=run / "sheets-bench", progress=False)
        t_sheets = (time.perf_counter() - t0) / max(min(args.sheets, args.classes), 1)
        t0 = time.perf_counter()
        export_run(run, progress=False)
        t_export = time.perf_counter() - t0

    site = index.parent
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    pages = sorted((site / "classes").glob("*.html"))
    per_page = []
    for page in pages:
        refs = {line for line in page.read_text().split('"') if line.startswith("../img/")}
        per_page.append(page.stat().st_size + sum((site / r[3:]).stat().st_size for r in refs))
    index_bytes = index.stat().st_size + sum(p.stat().st_size for p in site.glob("img/*/*.jpg")
                                             if f'"{p.relative_to(site)}"' in index.read_text())
    # baseline: the original photos every page would load if the atlas linked them
    from concepts.schema import open_run

    originals = 0
    folder = open_run(run)
    for class_id in folder.classes("extract"):
        with folder.activations(class_id) as cache:
            for raw in cache.images["path"]:
                photo = Path(raw)
                originals += photo.stat().st_size if photo.exists() else 0
    images_written = sum(p.stat().st_size for p in site.glob("img/*/*") if p.is_file())
    n = args.classes
    print(f"classes {n}, images/class {args.images}, concepts/class {args.concepts}")
    print(f"fabricate run           {t_fake:7.2f} s")
    print(f"build_atlas (site)      {t_site:7.2f} s   {t_site / n * 1000:7.1f} ms/class")
    print(f"write_sheets            {t_sheets:7.2f} s/class")
    print(f"export_run (3 formats)  {t_export:7.2f} s   {t_export / n * 1000:7.1f} ms/class")
    print(f"atlas on disk           {total / 1e6:7.2f} MB  ({total / n / 1e3:.0f} kB/class)")
    print(f"class page + pictures   median {sorted(per_page)[len(per_page) // 2] / 1e3:.0f} kB, "
          f"max {max(per_page) / 1e3:.0f} kB")
    print(f"index + thumbnails      {index_bytes / 1e3:.0f} kB")
    print(f"pictures written / original photos of the run: {images_written / 1e6:.2f} MB / "
          f"{originals / 1e6:.2f} MB = {images_written / max(originals, 1):.2f}x")
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
