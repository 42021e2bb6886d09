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
from .hdf5 import peek_attr, peek_attrs
from .importance import ImportanceRecord, read_importance
from .dictionary import DictionaryRecord, read_dictionary
from .layout import (CONFIG_FILE, DICTIONARY_FILE, LAYERS_FOLDER, STAGE_FOLDERS, STAGES, layer_folder, safe_filename,
                     stage_files, stage_path)
from .lineage import ClassStatus, class_status


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


def recorded_layer(folder: Path) -> str | None:
    """The ``layer`` attribute of the first readable activations file of a (sub-)run folder (None: no file)."""
    for path in stage_files(folder, "extract"):
        try:
            return str(peek_attrs(path).get("layer", "features"))
        except OSError:
            continue
    return None


class RunFolder:
    """``RUN/``: the per-class artefacts of every stage, read through the schema.

    ``layer`` chooses a cached layer of a several-layer run (None: the run's main layer, the folder itself):
    ``path`` is then that layer's folder (``RUN/layers/<name>``, see :mod:`concepts.schema.layout`) and ``root``
    the run folder.
    """

    def __init__(self, path: str | os.PathLike, *, must_exist: bool = True, layer: str | None = None):
        self.root = Path(path)
        if must_exist and not self.root.is_dir():
            raise ConceptsError(f"run folder not found: {self.root}")
        self.path = self.root if layer is None else self._find_layer(layer)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- layers
    def layers(self) -> dict[str, Path]:
        """Every cached layer -> its folder, the main layer (the run folder itself) first."""
        out: dict[str, Path] = {}
        main = recorded_layer(self.root)
        if main is not None:
            out[main] = self.root
        sub = self.root / LAYERS_FOLDER
        for folder in sorted(sub.iterdir()) if sub.is_dir() else []:
            name = recorded_layer(folder) if folder.is_dir() else None
            if name is not None:
                out.setdefault(name, folder)
        return out

    def _find_layer(self, layer: str) -> Path:
        layers = self.layers()
        if layer in layers:
            return layers[layer]
        if (self.root / LAYERS_FOLDER / safe_filename(layer)) in layers.values():
            return layer_folder(self.root, layer)
        raise ArtefactError(f"no layer {layer!r} cached in {self.root} (it has: {', '.join(layers) or 'none'}); "
                            f"extract it with `concepts extract IMAGES --out {self.root} --layer {layer}`")

    def at_layer(self, layer: str | None) -> "RunFolder":
        """The same run at another cached layer (None: the main layer)."""
        return RunFolder(self.root, layer=layer)

    def layer_path(self, layer: str, first: str) -> Path:
        """Where the activations of ``layer`` go: the run folder for its main layer (``first`` when the run has
        none yet), else ``RUN/layers/<name>``."""
        return self.root if layer == (recorded_layer(self.root) or first) else layer_folder(self.root, layer)

    def file(self, stage: str, class_id: str) -> Path:
        return stage_path(self.path, stage, class_id)

    def scan(self, stage: str, classes=None) -> StageScan:
        """Every file of ``stage``: readable ones by class id (from their attributes), damaged ones apart.

        ``classes``: only the files of these class ids (a task of a large run looks at its own classes, not at
        every file of the run: the cost stays per class)."""
        scan = StageScan(stage)
        paths = stage_files(self.path, stage) if not classes else \
            [path for path in (self.file(stage, c) for c in dict.fromkeys(classes)) if path.is_file()]
        for path in paths:
            try:
                class_id = peek_attr(path, "class_id", path.stem)
            except OSError as exc:
                scan.damaged[path] = f"unreadable: {str(exc).split(';')[0]}"
                continue
            scan.found[str(class_id)] = path
        scan.found = dict(sorted(scan.found.items()))
        return scan

    def classes(self, stage: str = "extract", requested=None) -> list[str]:
        """Class ids with a file of ``stage`` (an ArtefactError if any file of the stage is damaged); ``requested``:
        only those of these class ids."""
        return list(self.scan(stage, requested).check().found)

    def input_classes(self, stage: str, requested=None) -> list[str]:
        """The classes a stage that reads ``stage``'s files works on: ``requested`` (all of them if empty), each of
        which must have one; otherwise one ConceptsError naming the missing classes and the command to run."""
        what, files = {"extract": ("activations", "activations"), "factorize": ("concepts", "concept files")}[stage]
        available = self.classes(stage, requested)
        wanted = list(requested) if requested else available
        missing = [c for c in wanted if c not in available]
        if missing:
            raise ConceptsError(f"no {what} for class(es) {', '.join(missing)} in {self.path} "
                                f"(run `concepts {stage}` first)")
        if not wanted:
            raise ConceptsError(f"no {files} in {self.path / STAGE_FOLDERS[stage]} (run `concepts {stage}` first)")
        return wanted

    def status(self) -> dict[str, ClassStatus]:
        """Per class (every class with any file), per stage: done / stale / damaged / missing (attributes only)."""
        scans = {stage: self.scan(stage) for stage in STAGES}
        damaged = {stage: {p.stem: p for p in scan.damaged} for stage, scan in scans.items()}
        ids = set().union(*[scan.found for scan in scans.values()])
        ids |= {stem for stems in damaged.values() for stem in stems
                if not any(safe_filename(c) == stem for c in ids)}
        out = {}
        for class_id in sorted(ids):
            stem = safe_filename(class_id) if class_id not in {s for d in damaged.values() for s in d} else class_id
            files = {stage: scans[stage].found.get(class_id) or damaged[stage].get(stem) for stage in STAGES}
            files["dictionary"] = self.dictionary_file if self.dictionary_file.exists() else None
            out[class_id] = class_status(files, class_id)
        return out

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

    @property
    def dictionary_file(self) -> Path:
        return self.path / DICTIONARY_FILE

    def dictionary(self) -> DictionaryRecord:
        """The dictionary shared by the classes of a dataset-scope run."""
        if not self.dictionary_file.is_file():
            raise ArtefactError(f"no shared dictionary in {self.path} (run `concepts factorize --scope dataset`)")
        return read_dictionary(self.dictionary_file)

    def concept_tree(self, class_id: str):
        """The :class:`~concepts.schema.tree.ConceptTree` of a class: its concepts and sub-concepts, each with its
        parent, depth, rows, threshold, vector and importance (when the importance stage has run)."""
        from .tree import concept_tree

        importance = self.importance(class_id, maps=False) if self.file("importance", class_id).is_file() else None
        return concept_tree(self.concepts(class_id, coefficients=False), importance)

    def fviz(self, class_id: str, *, images: bool = True) -> FvizRecord:
        path = self.file("fviz", class_id)
        if not path.is_file():
            raise ArtefactError(f"no feature visualisations for class {class_id!r} in {self.path} (run `concepts "
                                "fviz`)")
        return read_fviz(path, images=images)

    def config(self) -> dict[str, Any] | None:
        """The raw ``RUN/config.yaml`` written by ``concepts run`` (None when there is none)."""
        import yaml

        path = self.root / CONFIG_FILE
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
