"""Where everything lives in a run folder (``RUN/``): one file per class and stage, and the run-level files.

::

    RUN/config.yaml                  resolved configuration (``concepts run``)
    RUN/activations/<stem>.h5        stage 1, extract
    RUN/concepts/<stem>.h5           stage 2, factorize
    RUN/importance/<stem>.h5         stage 3, importance
    RUN/dictionary/shared.h5         stage 2 at dataset scope: the dictionary shared by every class
    RUN/fviz/<stem>.h5               feature visualisations (optional stage)
    RUN/pipeline/state.json          what the last complete reduce step covered (``concepts run``)
    RUN/pipeline/last_run.json       timings of the last ``concepts run``
    RUN/atlas/                       the static site (``concepts atlas``)
    RUN/exports/                     the tables (``concepts export``)
    RUN/layers/<layer>/              every further layer of a several-layer extraction (``--layer A --layer B``):
                                     a run folder of its own (activations/, concepts/, importance/, exports/)

``<stem>`` is :func:`safe_filename` of the class id; the class id itself is an attribute of every file.

Several layers: the run folder itself holds the *main* layer (the first one ever extracted into it, recorded as the
``layer`` attribute of its activations); every other layer is the sub-run ``RUN/layers/<safe layer name>/`` with the
same layout, so that each stage, ``info`` and ``export`` work on a layer by pointing at its folder
(:class:`~concepts.schema.run.RunFolder` ``(run, layer=...)``). A one-layer run has no ``layers/`` folder.
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
#: the dictionary shared by the classes of a dataset-scope run
DICTIONARY_FILE = "dictionary/shared.h5"
PIPELINE_FOLDER = "pipeline"
ATLAS_FOLDER = "atlas"
EXPORTS_FOLDER = "exports"
LAYERS_FOLDER = "layers"


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


def layer_folder(run: str | os.PathLike, layer: str) -> Path:
    """``RUN/layers/<safe layer name>``: the sub-run of a layer other than the run's main layer."""
    return Path(run) / LAYERS_FOLDER / safe_filename(layer)
