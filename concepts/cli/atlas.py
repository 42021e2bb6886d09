"""`concepts atlas RUN`: the static website (RUN/atlas/) and the PNG sheets."""
from __future__ import annotations

import sys

from .common import add_classes


def register(sub) -> None:
    p = sub.add_parser("atlas", help="build the static atlas website and PNG sheets of a run",
                       description="Build RUN/atlas/: index.html (every class, filter, sort), one page per class "
                                   "(concepts by importance with crops and heatmaps, per-image concept maps, "
                                   "image embedding, similar concepts of other classes) and PNG sheets. "
                                   "Opens from disk: no server and no network needed.")
    p.add_argument("run", help="the run folder (with activations/, concepts/ and importance/)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/atlas)")
    p.add_argument("--top-k", type=int, default=6, help="crops shown per concept")
    p.add_argument("--examples", type=int, default=4, help="images shown with their concept maps")
    p.add_argument("--overlay-concepts", type=int, default=5, help="concepts drawn on the example images")
    p.add_argument("--similar", type=int, default=3, help="similar concepts of other classes listed per concept")
    p.add_argument("--thumb-size", type=int, default=192, help="pixel size of the photo thumbnails")
    p.add_argument("--image-format", choices=["jpeg", "webp"], default="jpeg")
    p.add_argument("--no-sheets", action="store_true", help="skip the PNG sheets")
    p.add_argument("--sheets-only", action="store_true", help="only write the PNG sheets (RUN/atlas/sheets)")
    add_classes(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atlas import build_atlas, write_sheets

    if args.sheets_only:
        paths = write_sheets(args.run, classes=args.classes, out=(None if args.out is None else f"{args.out}/sheets"),
                             top_k=args.top_k, n_examples=args.examples, n_overlay=args.overlay_concepts,
                             progress=not args.quiet)
        print(f"atlas: {len(paths)} sheets in {paths[0].parent if paths else args.run}", file=sys.stderr)
        return 0
    index = build_atlas(args.run, classes=args.classes, top_k=args.top_k, n_examples=args.examples,
                        n_overlay=args.overlay_concepts, n_similar=args.similar, thumb_size=args.thumb_size,
                        image_format=args.image_format, sheets=not args.no_sheets, out=args.out,
                        progress=not args.quiet)
    print(f"atlas: open {index}", file=sys.stderr)
    return 0
