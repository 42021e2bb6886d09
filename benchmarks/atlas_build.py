"""Atlas and export at scale: build time, bytes and files per class, extrapolated to 1000 classes.

Fabricates a contract-following run (tests/atlas/atlas_fakerun.py: real Imagenette photos when ../shared/data is
there, random arrays) with N classes, then times build_atlas (the site, without figures), the figures of a few
classes and export_run. The Imagenette photos are 224 x 224; ``--photo-side 375`` first resizes them so that their
shorter side is 375 pixels, as an ImageNet original (crops are then cut from more pixels: larger files). Sizes are
compared with a baseline measured in the same run: the original photos every page would load if the atlas linked
them instead of writing its own files.

    python benchmarks/atlas_build.py --classes 20 --images 50 --concepts 10 --photo-side 375
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "atlas"))
sys.path.insert(0, str(ROOT / "tests"))

import atlas_fakerun  # noqa: E402
from atlas_fakerun import SHARED, write_class  # noqa: E402

from concepts.atlas import build_atlas, write_figures  # noqa: E402
from concepts.export import export_run  # noqa: E402


def _resized_photos(target: Path, side: int) -> Path:
    """A copy of the Imagenette folders with every photo's shorter side resized to ``side`` (4:3 originals)."""
    from PIL import Image

    for folder in sorted(p for p in SHARED.iterdir() if p.is_dir()):
        out = target / folder.name
        out.mkdir(parents=True, exist_ok=True)
        for photo in sorted(folder.glob("*.JPEG")):
            with Image.open(photo) as picture:
                picture.convert("RGB").resize((side * 4 // 3, side), Image.BICUBIC).save(out / photo.name,
                                                                                            quality=90)
    return target


def kind_of(site: Path, path: Path) -> str:
    rel = path.relative_to(site)
    if rel.parts[0] == "img":
        return "photo files" if path.name.startswith("p") else "crop files"
    if rel.parts[0] == "classes":
        if len(rel.parts) == 2:
            return "class pages"
        if path.name == "images.js":
            return "image data"
        if path.name == "concepts.js":
            return "concept data"
        return "concept pages" if path.name.startswith("c") else "image pages"
    return "index, static"


def sizes(site: Path) -> tuple[collections.Counter, collections.Counter]:
    size, count = collections.Counter(), collections.Counter()
    for path in site.rglob("*"):
        if path.is_file():
            kind = kind_of(site, path)
            size[kind] += path.stat().st_size
            count[kind] += 1
    return size, count


def originals(run: Path) -> int:
    from concepts.schema import open_run

    total = 0
    folder = open_run(run)
    for class_id in folder.classes("extract"):
        with folder.activations(class_id) as cache:
            total += sum(Path(p).stat().st_size for p in cache.images["path"] if Path(p).exists())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--photo-side", type=int, default=0, help="resize the photos' shorter side first (0: no)")
    parser.add_argument("--figures", type=int, default=2, help="classes to time the figures for")
    parser.add_argument("--quality", type=int, default=None, help="WebP quality of photos and crops (default: "
                        "the atlas setting's)")
    parser.add_argument("--thumb-size", type=int, default=None, help="largest side of the photo files (default: "
                        "the atlas setting's)")
    parser.add_argument("--image-format", default=None, help="webp | jpeg | avif (default: the atlas setting's)")
    parser.add_argument("--keep", default=None, help="keep the run in this folder")
    args = parser.parse_args()

    run = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="atlas-bench-"))
    run.mkdir(parents=True, exist_ok=True)
    if args.photo_side:
        atlas_fakerun.SHARED = _resized_photos(run / "photos-resized", args.photo_side)
    wnids = sorted(p.name for p in atlas_fakerun.SHARED.iterdir() if p.is_dir()) if SHARED.is_dir() else [None]
    t0 = time.perf_counter()
    for c in range(args.classes):
        write_class(run, f"c{c:04d}", f"class {c}", c, wnid=wnids[c % len(wnids)], n_images=args.images,
                    r=args.concepts, dim=64, seed=c)
    t_fake = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        pictures = {key: value for key, value in (("quality", args.quality), ("thumb_size", args.thumb_size),
                                                           ("image_format", args.image_format))
                    if value is not None}
        index = build_atlas(run, progress=False, alignment=False, **pictures)
        t_site = time.perf_counter() - t0
        n_fig = min(args.figures, args.classes)
        t0 = time.perf_counter()
        if n_fig:
            write_figures(run, classes=[f"c{c:04d}" for c in range(n_fig)], out=run / "figures-bench", progress=False)
        t_figures = (time.perf_counter() - t0) / max(n_fig, 1)
        t0 = time.perf_counter()
        export_run(run, progress=False)
        t_export = time.perf_counter() - t0
    site = index.parent
    size, count = sizes(site)
    n = args.classes
    total, files = sum(size.values()), sum(count.values())
    print(f"classes {n}, images/class {args.images}, concepts/class {args.concepts}, "
          f"photos {'%d px shorter side' % args.photo_side if args.photo_side else 'as shipped (224 x 224)'}"
          + "".join(f", {key} {value}" for key, value in pictures.items()))
    print(f"fabricate run           {t_fake:7.2f} s")
    print(f"build_atlas (site)      {t_site:7.2f} s   {t_site / n:6.2f} s/class")
    print(f"figures (svg+pdf+png)   {t_figures:7.2f} s/class ({n_fig} classes)")
    print(f"export_run (3 formats)  {t_export:7.2f} s   {t_export / n:6.2f} s/class")
    print(f"atlas on disk           {total / 1e6:7.2f} MB, {files} files: {total / n / 1e3:.0f} kB and "
          f"{files / n:.0f} files per class -> {total / n * 1000 / 1e6:.0f} MB and {files / n * 1000:.0f} files "
          f"at 1000 classes")
    for kind in sorted(size, key=size.get, reverse=True):
        print(f"  {kind:16s} {size[kind] / n / 1e3:7.1f} kB/class  {count[kind] / n:6.1f} files/class")
    html = sum(v for k, v in size.items() if "pages" in k or k.endswith(" data"))
    print(f"  (pages and their data: {html / n / 1e3:.0f} kB/class; pictures: "
          f"{(size['photo files'] + size['crop files']) / n / 1e3:.0f} kB/class)")
    written = size["photo files"] + size["crop files"]
    base = originals(run)
    print(f"pictures written / original photos of the run: {written / 1e6:.2f} MB / {base / 1e6:.2f} MB = "
          f"{written / max(base, 1):.2f}x")
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
