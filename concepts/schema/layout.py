"""Where everything lives in a run folder (``RUN/``): one file per class and stage, and the run-level files.

::

    RUN/config.yaml                  resolved configuration (``concepts run``)
    RUN/activations/<stem>.h5        stage 1, extract
    RUN/concepts/<stem>.h5           stage 2, factorize
    RUN/importance/<stem>.h5         stage 3, importance
    RUN/fviz/<stem>.h5               feature visualisations (optional stage)
    RUN/pipeline/state.json          what the last complete reduce step covered (``concepts run``)
    RUN/pipeline/last_run.json       timings of the last ``concepts run``
    RUN/atlas/                       the static site (``concepts atlas``)
    RUN/exports/                     the tables (``concepts export``)

``<stem>`` is :func:`safe_filename` of the class id; the class id itself is an attribute of every file.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

#: stage -> folder of its per-class files, in the order of the data flow
STAGE_FOLDERS = {"extract": "activations", "factorize": "concepts", "importance": "importance", "fviz": "fviz"}
#: the stages every finished class of a run has; the others (fviz) are optional
STAGES = ("extract", "factorize", "importance")
OPTIONAL_STAGES = tuple(stage for stage in STAGE_FOLDERS if stage not in STAGES)
CONFIG_FILE = "config.yaml"
PIPELINE_FOLDER = "pipeline"
ATLAS_FOLDER = "atlas"
EXPORTS_FOLDER = "exports"


def safe_filename(class_id: str) -> str:
    """A file-system safe, stable file stem for a class id (a hash suffix keeps distinct ids distinct)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", class_id).strip("._") or "class"
    if stem != class_id:
        stem += "-" + hashlib.sha1(class_id.encode()).hexdigest()[:8]
    return stem


def stage_folder(run: str | os.PathLike, stage: str) -> Path:
    return Path(run) / STAGE_FOLDERS[stage]


def stage_path(run: str | os.PathLike, stage: str, class_id: str) -> Path:
    """``RUN/<stage folder>/<stem>.h5`` of a class."""
    return stage_folder(run, stage) / f"{safe_filename(class_id)}.h5"


def stage_files(run: str | os.PathLike, stage: str) -> list[Path]:
    """Every finished-looking file of a stage (``*.h5``; temporary files end in ``.tmp``), sorted."""
    return sorted(stage_folder(run, stage).glob("*.h5"))
