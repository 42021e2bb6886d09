"""Concept names: ``RUN/labels/vocabulary.csv`` (written by ``concepts label``) and ``RUN/labels.csv`` (yours).

A concept's label is, in this order: the manual label of ``RUN/labels.csv`` (``class,concept,label`` lines; a
header line is allowed) -> the best vocabulary word of ``concepts label``, if the class's concepts are still the
ones it named (its concepts file's creation id is recorded) -> none. :func:`concept_labels` gives them for a class.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ArtefactError
from .runfiles import write_text_atomic
from .spec import FileSpec, Item

LABELS_FOLDER = "labels"
VOCABULARY_FILE = "vocabulary.csv"
META_FILE = "vocabulary.json"
MANUAL_FILE = "labels.csv"
VOCABULARY_COLUMNS = ("class_id", "concept", "rank", "word", "score")
SOURCES = ("manual", "vocabulary", "none")

LABELS = FileSpec(
    stage="label",
    path="RUN/labels/vocabulary.csv",
    summary="The best vocabulary words of every concept (`concepts label`), with `vocabulary.json` beside it; "
            "`RUN/labels.csv` (class,concept,label) overrides them.",
    datasets=(
        Item("class_id", "str", "the class"),
        Item("concept", "int", "index of the concept in the class's bank"),
        Item("rank", "int", "1 = the concept's label"),
        Item("word", "str", "a vocabulary entry"),
        Item("score", "float", "cosine of the centred concept and word embeddings"),
    ),
    attributes=(
        Item("encoder", "JSON", "the encoder: name, weights, sha256 of its weights"),
        Item("vocab", "JSON", "path, sha256 and size of the vocabulary"),
        Item("settings", "JSON", "the `label` settings (template, n_crops, min_crop, top_words)"),
        Item("classes", "JSON", "class -> creation_id of the concepts file that was named (older labels are ignored)"),
        Item("created, package_version", "str", "when and by which version"),
    ),
    notes=("The columns are those of `vocabulary.csv`, the attributes the keys of `vocabulary.json`.",),
)


@dataclass(frozen=True)
class ConceptLabel:
    """A concept's name: ``label`` ('' when none), ``source`` (manual | vocabulary | none), ``score`` (the
    vocabulary cosine; NaN otherwise) and the vocabulary's best ``words`` as (word, score) pairs."""

    label: str = ""
    source: str = "none"
    score: float = float("nan")
    words: tuple[tuple[str, float], ...] = field(default=())


def labels_folder(run: str | os.PathLike) -> Path:
    return Path(run) / LABELS_FOLDER


def write_vocabulary_labels(run: str | os.PathLike, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Write ``vocabulary.csv`` (rows with :data:`VOCABULARY_COLUMNS`) and ``vocabulary.json``, each atomically."""
    folder = labels_folder(run)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(VOCABULARY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6f}" if k == "score" else row[k]) for k in VOCABULARY_COLUMNS})
    body = {"format": "concepts-labels", "format_version": 1, "package_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **meta}
    write_text_atomic(folder / META_FILE, json.dumps(body, indent=1, sort_keys=True, default=str) + "\n")
    return write_text_atomic(folder / VOCABULARY_FILE, buffer.getvalue())


def read_vocabulary_labels(run: str | os.PathLike) -> tuple[dict[str, Any], dict[tuple[str, int], list]]:
    """``(meta, {(class_id, concept): [(word, score), ...] best first})``; empty when the run has none."""
    folder = labels_folder(run)
    if not (folder / VOCABULARY_FILE).is_file():
        return {}, {}
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        with open(folder / VOCABULARY_FILE, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        words: dict[tuple[str, int], list] = {}
        for row in sorted(rows, key=lambda r: (r["class_id"], int(r["concept"]), int(r["rank"]))):
            words.setdefault((row["class_id"], int(row["concept"])), []).append((row["word"], float(row["score"])))
    except (OSError, ValueError, KeyError) as exc:
        raise ArtefactError(f"{folder} holds damaged labels ({exc}); rerun `concepts label`") from None
    return meta, words


def read_manual_labels(run: str | os.PathLike) -> dict[tuple[str, int], str]:
    """``RUN/labels.csv``: ``class,concept,label`` lines (class id, concept index, free text)."""
    path = Path(run) / MANUAL_FILE
    if not path.is_file():
        return {}
    out: dict[tuple[str, int], str] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise ArtefactError(f"{path}:{number}: expected 'class,concept,label'")
            try:
                out[(row[0], int(row[1]))] = ",".join(row[2:]).strip()
            except ValueError:
                if number == 1:
                    continue  # header
                raise ArtefactError(f"{path}:{number}: concept {row[1]!r} is not an integer") from None
    return out


def concept_labels(run: str | os.PathLike, class_id: str, n_concepts: int, concepts_id: str | None = None,
                   *, manual=None, vocabulary=None) -> list[ConceptLabel]:
    """The label of each concept of a class (see the module docstring). ``concepts_id``: the creation id of the
    class's concepts file (vocabulary labels of other concepts are ignored). ``manual``/``vocabulary``: the
    already read files (else they are read)."""
    manual = read_manual_labels(run) if manual is None else manual
    meta, words = read_vocabulary_labels(run) if vocabulary is None else vocabulary
    named = (meta.get("classes") or {}).get(class_id)
    current = concepts_id is None or named == concepts_id
    out = []
    for k in range(int(n_concepts)):
        best = words.get((class_id, k), []) if current else []
        if (class_id, k) in manual:
            out.append(ConceptLabel(manual[(class_id, k)], "manual", float("nan"), tuple(best)))
        elif best:
            out.append(ConceptLabel(best[0][0], "vocabulary", float(best[0][1]), tuple(best)))
        else:
            out.append(ConceptLabel())
    return out
