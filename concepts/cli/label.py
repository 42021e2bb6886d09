"""``concepts label RUN``: name every concept from a vocabulary, with a vision-language encoder."""
from __future__ import annotations

import sys

from ..settings.cli import add_settings
from .common import prepare_downloads, stage_settings


def register(sub) -> None:
    p = sub.add_parser("label", help="name the concepts: score a vocabulary with a CLIP encoder",
                       description="Embed each concept's top crops with the encoder's image tower and every "
                                   "vocabulary word with its text tower, centre both (on the class mean, on the "
                                   "vocabulary mean), and keep each concept's best words in "
                                   "RUN/labels/vocabulary.csv. RUN/labels.csv (class,concept,label) overrides them. "
                                   "The exports then carry concept_label, label_source and label_score.")
    p.add_argument("run", help="the run folder (with activations/ and concepts/)")
    add_settings(p, "label")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..labels import label_run

    cfg = stage_settings(args, "label")
    if not cfg.label.checkpoint:
        prepare_downloads()  # offline, open_clip's download fails at once with one line
    report = label_run(args.run, config=cfg, progress=not args.quiet)
    print(report.summary(), file=sys.stderr)
    return 0
