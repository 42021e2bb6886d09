"""Map a class (folder name) to the logit it is explained for, and to a readable name."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ConceptsError

WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ClassLabel:
    index: int | None  # None: to be decided from the model's predictions
    name: str
    source: str  # wordnet | integer | labels | predicted


def read_labels_file(path: str | Path) -> dict[str, int]:
    """CSV ``folder,index`` (a header line is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise ConceptsError(f"labels file not found: {path}")
    table: dict[str, int] = {}
    with open(path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise ConceptsError(f"{path}:{number}: expected 'folder,index'")
            try:
                table[row[0]] = int(row[1])
            except ValueError:
                if number == 1:
                    continue  # header
                raise ConceptsError(f"{path}:{number}: index {row[1]!r} is not an integer") from None
    return table


@lru_cache(maxsize=1)
def _imagenet_info():
    """timm's ImageNet label tables (parsed from text files: ~0.1 s, so once per process)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return info, {wnid: i for i, wnid in enumerate(info.label_names())}


def _imagenet_name(index: int) -> str:
    return _imagenet_info()[0].index_to_description(index).split(",")[0].strip()


def resolve_label(class_id: str, num_classes: int, labels: dict[str, int] | None = None) -> ClassLabel:
    """WordNet id -> ImageNet index (1000-class models), integer -> index, ``labels`` table, else predicted."""
    if labels and class_id in labels:
        index = labels[class_id]
        if not 0 <= index < num_classes:
            raise ConceptsError(f"labels file maps {class_id!r} to {index}, outside the model's {num_classes} classes")
        name = _imagenet_name(index) if num_classes == 1000 else class_id
        return ClassLabel(index, name, "labels")
    if WNID.match(class_id) and num_classes == 1000:
        index = _imagenet_info()[1].get(class_id)
        if index is not None:
            return ClassLabel(index, _imagenet_name(index), "wordnet")
    if class_id.isdigit():
        index = int(class_id)
        if not 0 <= index < num_classes:
            raise ConceptsError(f"class folder {class_id!r} is not a valid index for a {num_classes}-class model")
        return ClassLabel(index, _imagenet_name(index) if num_classes == 1000 else class_id, "integer")
    return ClassLabel(None, class_id, "predicted")


def imagenet_name(index: int, num_classes: int, fallback: str) -> str:
    return _imagenet_name(index) if num_classes == 1000 else fallback


def imagenet_name_of(class_id: str) -> str:
    """The readable ImageNet name of a WordNet-id folder (any model), else the folder name itself."""
    if WNID.match(class_id):
        index = _imagenet_info()[1].get(class_id)
        if index is not None:
            return _imagenet_name(index)
    return class_id
