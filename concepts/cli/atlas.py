"""`concepts atlas RUN`: the static website (RUN/atlas/), figures for papers (--figures) and PNG sheets."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import stage_settings


def register(sub) -> None:
    p = sub.add_parser("atlas", help="build the static atlas website of a run (and its figures for papers)",
                       description="Build RUN/atlas/: index.html (every class, filter and sort kept in the URL), a "
                                   "page per class (how much of the logit the concepts explain, fit and fidelity, "
                                   "importance by each method with its intervals, concepts with their top crops, "
                                   "similar concepts, alignment with the head's classes, the most sure / wrong / "
                                   "least sure images, the image map), a page per concept and per image; "
                                   "a dataset-scope run: the shared dictionary's pages (every atom, its top crops "
                                   "across the classes, the classes using it, its importance in each); a "
                                   "several-layer run: every layer with importances (or --layer), with a layer "
                                   "switcher in the page header (RUN/atlas/layers/<name>/ for the others); "
                                   "--figures: SVG, PDF and 300-dpi PNG figures per class; --sheets: PNG sheets. "
                                   "Opens from disk: no server and no network needed.")
    p.add_argument("run", help="the run folder (with activations/, concepts/ and importance/)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/atlas)")
    p.add_argument("--sheets-only", action="store_true", help="only write the PNG sheets (RUN/atlas/sheets)")
    p.add_argument("--figures-only", action="store_true", help="only write the figures (RUN/atlas/figures)")
    add_settings(p, "atlas")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..atlas import build_atlas, write_figures, write_sheets

    cfg = stage_settings(args, "atlas")
    if args.figures_only:
        paths = write_figures(args.run, config=cfg, out=args.out, progress=not args.quiet)
        print(f"atlas: {len(paths)} figure files in {paths[0].parent.parent if paths else args.run}",
              file=sys.stderr)
        return 0
    if args.sheets_only:
        paths = write_sheets(args.run, config=cfg, out=(None if args.out is None else f"{args.out}/sheets"),
                             progress=not args.quiet)
        print(f"atlas: {len(paths)} sheets in {paths[0].parent if paths else args.run}", file=sys.stderr)
        return 0
    index = build_atlas(args.run, config=cfg, out=args.out, progress=not args.quiet)
    print(f"atlas: open {index}", file=sys.stderr)
    return 0
