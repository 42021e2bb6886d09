"""The artefact contracts as data: every dataset and attribute of a stage file, named and described once.

The readers and writers of :mod:`concepts.schema` use these names; ``docs/ARCHITECTURE.md`` shows the tables that
:meth:`FileSpec.markdown` makes (a test checks that the page and the code agree).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    """One dataset or attribute: its name (``group/name`` for datasets in groups), shape/type and meaning."""

    name: str
    kind: str  # shape and dtype of a dataset, or the type of an attribute
    meaning: str
    required: bool = True  # readers refuse a file without it (datasets only)
    since: int = 1  # the format version that introduced it


@dataclass(frozen=True)
class FileSpec:
    stage: str
    path: str  # e.g. "RUN/activations/<class>.h5"
    summary: str
    datasets: tuple[Item, ...]
    attributes: tuple[Item, ...]
    notes: tuple[str, ...] = field(default=())

    def required_datasets(self) -> list[str]:
        return [item.name for item in self.datasets if item.required and "<" not in item.name]

    def dataset(self, name: str) -> Item:
        return next(item for item in self.datasets if item.name == name)

    def markdown(self) -> str:
        """The contract as the Markdown tables of docs/ARCHITECTURE.md."""
        lines = [f"### `{self.path}` ({self.stage})", "", self.summary, "",
                 "| dataset | shape / type | meaning |", "|---|---|---|"]
        for item in self.datasets:
            flag = "" if item.required else " (optional)"
            lines.append(f"| `{item.name}` | {item.kind} | {item.meaning}{flag} |")
        lines += ["", "| attribute | type | meaning |", "|---|---|---|"]
        for item in self.attributes:
            since = f" (format {item.since}+)" if item.since > 1 else ""
            lines.append(f"| `{item.name}` | {item.kind} | {item.meaning}{since} |")
        if self.notes:
            lines += [""] + list(self.notes)
        return "\n".join(lines)


#: attributes every stage file carries
COMMON_ATTRIBUTES = (
    Item("stage", "str", "the stage that wrote the file (extract, factorize, importance, fviz)"),
    Item("format_version", "int", "artefact format version (absent: 1, concepts 0.1)", since=2),
    Item("creation_id", "str", "random id of this file, recorded by the files computed from it", since=2),
    Item("inputs", "JSON", "stage -> {creation_id, config_hash} of the files this one was computed from", since=2),
    Item("class_id", "str", "the class (folder name / WordNet id)"),
    Item("config", "JSON", "the settings that made the file"),
    Item("config_hash", "str", "hash of those settings and of the inputs' settings: a rerun with others refuses"),
    Item("package", "str", "'concepts'"),
    Item("package_version", "str", "version of concepts that wrote the file"),
    Item("created", "str", "UTC time of writing (ISO 8601)"),
)
