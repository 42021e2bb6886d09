"""`concepts atlas RUN`: the static website (RUN/atlas/) and the PNG sheets."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import stage_settings


def register(sub) -> None:
    p = sub.add_parser("atlas", help="build the static atlas website and PNG sheets of a run",
                       description="Build RUN/atlas/: index.html (every class, filter, sort), one page per class "
                                   "(concepts by importance with crops and heatmaps, per-image concept maps, "
                                   "image embedding, similar concepts of other classes) and PNG sheets. "
                                   "Opens from disk: no server and no network needed.")
    p.add_argument("run", help="the run folder (with activations/, concepts/ and importance/)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/atlas)")
    p.add_argument("--sheets-only", action="store_true", help="only write the PNG sheets (RUN/atlas/sheets)")
    add_settings(p, "atlas")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atlas import build_atlas, write_sheets

    cfg = stage_settings(args, "atlas")
    if args.sheets_only:
        paths = write_sheets(args.run, config=cfg, out=(None if args.out is None else f"{args.out}/sheets"),
                             progress=not args.quiet)
        print(f"atlas: {len(paths)} sheets in {paths[0].parent if paths else args.run}", file=sys.stderr)
        return 0
    index = build_atlas(args.run, config=cfg, out=args.out, progress=not args.quiet)
    print(f"atlas: open {index}", file=sys.stderr)
    return 0
