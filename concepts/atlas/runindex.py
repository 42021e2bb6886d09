"""What every class page needs to know about the other classes (the atlas's first pass): their concept banks
(similar concepts across classes), their concepts' importance (shown beside each similar concept), their
names by logit index (alignment, predictions) and their order (previous / next / random class)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..evidence import class_diagnostics, method_values
from ..schema.classdata import load_class
from .analysis import Neighbour, similar_concepts


@dataclass
class ClassEntry:
    """One class, as the other classes' pages see it."""

    class_id: str
    class_name: str
    stem: str
    class_index: int
    index_source: str
    bank: np.ndarray  # (r, D)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (r,) value shown (see evidence.methods)
    ranks: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (r,) rank of each concept (1 = first)

    @property
    def page(self) -> str:
        return f"classes/{self.stem}.html"

    def concept_page(self, concept: int) -> str:
        return f"classes/{self.stem}/c{concept}.html"


def _entry(run: Path, class_id: str) -> ClassEntry:
    data = load_class(run, class_id, with_maps=False, with_coefficients=False)
    logit = class_diagnostics(data).logit
    entry = ClassEntry(data.class_id, data.class_name, data.stem, int(data.class_index),
                       str(data.act_attrs.get("class_index_source", "")), np.asarray(data.components, np.float32))
    for method in data.methods:
        shown = method_values(data, method, logit)
        rank = np.empty(len(shown.order), np.int64)
        rank[shown.order] = np.arange(1, len(shown.order) + 1)
        entry.values[method], entry.ranks[method] = shown.values, rank
    return entry


class RunIndex:
    """The classes of an atlas, in page order, with the similar concepts of every concept."""

    def __init__(self, run: Path, found: list[tuple[str, str]], n_similar: int):
        self.entries = [_entry(run, class_id) for class_id, _ in found]
        self.neighbours: list[list[list[Neighbour]]] = similar_concepts([e.bank for e in self.entries],
                                                                        k=n_similar)
        self._by_logit = {e.class_index: e for e in self.entries if e.class_index >= 0}
        self.imagenet = any(e.index_source == "wordnet" for e in self.entries)
        self.n_logits: int | None = None  # set when the model's head is known

    def __len__(self) -> int:
        return len(self.entries)

    def by_logit(self, index: int) -> ClassEntry | None:
        """The class of the atlas explained for logit ``index`` (None when it has none)."""
        return self._by_logit.get(int(index))

    def logit_name(self, index: int) -> str:
        """A readable name for logit ``index``: the atlas's class, else the ImageNet name (1000-class models)."""
        entry = self.by_logit(index)
        if entry is not None:
            return entry.class_name
        if index >= 0 and (self.n_logits == 1000 or (self.n_logits is None and self.imagenet)):
            from ..datasets.labels import imagenet_name

            return imagenet_name(int(index), 1000, f"logit {index}")
        return f"logit {index}" if index >= 0 else "n/a"

    def around(self, pos: int) -> tuple[ClassEntry | None, ClassEntry | None]:
        """The previous and next class in page order (wrapping around; None with a single class)."""
        if len(self.entries) < 2:
            return None, None
        return self.entries[pos - 1], self.entries[(pos + 1) % len(self.entries)]
