"""A run folder as an object: which classes each stage holds, and the typed reader of each class file."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtefactError, ConceptsError
from .activations import ActivationCache
from .concepts import ConceptsRecord, read_concepts
from .fviz import FvizRecord, read_fviz
from .hdf5 import peek_attrs
from .importance import ImportanceRecord, read_importance
from .layout import CONFIG_FILE, STAGE_FOLDERS, stage_files, stage_path


@dataclass
class StageScan:
    """The files of one stage: class id -> path, and the files that cannot be read (path -> why)."""

    stage: str
    found: dict[str, Path] = field(default_factory=dict)
    damaged: dict[Path, str] = field(default_factory=dict)

    def check(self) -> "StageScan":
        """Raise one ArtefactError line naming the damaged files (the fix included), if any."""
        if self.damaged:
            names = ", ".join(p.name for p in list(self.damaged)[:3]) + (" ..." if len(self.damaged) > 3 else "")
            folder = next(iter(self.damaged)).parent
            raise ArtefactError(f"{len(self.damaged)} damaged file(s) in {folder}: {names} "
                                f"({next(iter(self.damaged.values()))}); delete them or rerun "
                                f"`concepts {self.stage} --overwrite`")
        return self


class RunFolder:
    """``RUN/``: the per-class artefacts of every stage, read through the schema."""

    def __init__(self, path: str | os.PathLike, *, must_exist: bool = True):
        self.path = Path(path)
        if must_exist and not self.path.is_dir():
            raise ConceptsError(f"run folder not found: {self.path}")

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, stage: str, class_id: str) -> Path:
        return stage_path(self.path, stage, class_id)

    def scan(self, stage: str) -> StageScan:
        """Every file of ``stage``: readable ones by class id (from their attributes), damaged ones apart."""
        scan = StageScan(stage)
        for path in stage_files(self.path, stage):
            try:
                attrs = peek_attrs(path)
            except OSError as exc:
                scan.damaged[path] = f"unreadable: {str(exc).split(';')[0]}"
                continue
            scan.found[str(attrs.get("class_id", path.stem))] = path
        scan.found = dict(sorted(scan.found.items()))
        return scan

    def classes(self, stage: str = "extract") -> list[str]:
        """Class ids with a file of ``stage`` (an ArtefactError if any file of the stage is damaged)."""
        return list(self.scan(stage).check().found)

    def activations(self, class_id: str) -> ActivationCache:
        path = self.file("extract", class_id)
        if not path.is_file():
            raise ArtefactError(f"no activations for class {class_id!r} in {self.path} (run `concepts extract`)")
        return ActivationCache(path)

    def concepts(self, class_id: str, *, coefficients: bool = True) -> ConceptsRecord:
        path = self.file("factorize", class_id)
        if not path.is_file():
            raise ArtefactError(f"no concepts for class {class_id!r} in {self.path} (run `concepts factorize`)")
        return read_concepts(path, coefficients=coefficients)

    def importance(self, class_id: str, *, maps: bool = True) -> ImportanceRecord:
        path = self.file("importance", class_id)
        if not path.is_file():
            raise ArtefactError(f"no importance for class {class_id!r} in {self.path} (run `concepts importance`)")
        return read_importance(path, maps=maps)

    def fviz(self, class_id: str, *, images: bool = True) -> FvizRecord:
        path = self.file("fviz", class_id)
        if not path.is_file():
            raise ArtefactError(f"no feature visualisations for class {class_id!r} in {self.path} (run `concepts "
                                "fviz`)")
        return read_fviz(path, images=images)

    def config(self) -> dict[str, Any] | None:
        """The raw ``RUN/config.yaml`` written by ``concepts run`` (None when there is none)."""
        import yaml

        path = self.path / CONFIG_FILE
        if not path.is_file():
            return None
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ArtefactError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None


def open_run(path: str | os.PathLike) -> RunFolder:
    """The run folder ``path`` (which must exist)."""
    return RunFolder(path)


__all__ = ["RunFolder", "StageScan", "open_run", "STAGE_FOLDERS"]
