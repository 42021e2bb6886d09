"""One class of a run (activations, concepts, importance) as plain numpy arrays: what the atlas and the exports
read. Everything goes through the stage readers, so both work on any run folder that follows the contract, old
format versions included."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import ArtefactError, ConceptsError
from .importance import MethodImportance
from .layout import STAGE_FOLDERS, safe_filename
from .run import RunFolder

#: Preference order of the importance methods used to rank concepts.
METHOD_PREFERENCE = ("sobol", "gradient", "occlusion")


@dataclass
class ClassData:
    """Everything the atlas and the exports need about one class of a run."""

    class_id: str
    class_name: str
    class_index: int
    stem: str  # file stem shared by the three artefacts
    paths: dict[str, Path]  # stage -> artefact path
    act_attrs: dict[str, Any]
    concept_attrs: dict[str, Any]
    importance_attrs: dict[str, Any]
    image_paths: list[str]
    image_sha256: list[str]
    skipped: np.ndarray  # (n_images,) bool
    logit: np.ndarray  # (n_images,) float32
    row_image: np.ndarray  # (R,) int
    row_box: np.ndarray  # (R, 4) int, x0 y0 x1 y1 in model-input pixels
    components: np.ndarray  # (r, D) float32
    coefficients: np.ndarray  # (R, r) float32
    methods: dict[str, MethodImportance]
    presence: np.ndarray | None  # (n_images, r, H, W) float32 or None
    tree: Any = None  # TreeArrays of the sub-concepts (a recursive concepts file), else None
    subconcepts: Any = None  # SubconceptImportance of those sub-concepts, else None
    contribution: np.ndarray | None = None  # (n_images, r, H, W) float32: each concept's term of the logit
    predicted: np.ndarray | None = None  # (n_images,) int: the model's top-1 index (-1 for skipped images)
    image_width: np.ndarray | None = None  # (n_images,) int: original size of each photo (0: unknown)
    image_height: np.ndarray | None = None
    fidelity_attrs: dict[str, Any] = field(default_factory=dict)  # the importance file's /fidelity attributes
    maps_attrs: dict[str, Any] = field(default_factory=dict)  # its /maps attributes

    @property
    def n_images(self) -> int:
        """Number of usable (non-skipped) images."""
        return int((~self.skipped).sum())

    @property
    def n_concepts(self) -> int:
        return int(self.components.shape[0])

    @property
    def kept(self) -> np.ndarray:
        return np.flatnonzero(~self.skipped)

    @property
    def primary_method(self) -> str | None:
        """The method used to rank concepts: sobol, else gradient, else occlusion, else any."""
        for name in METHOD_PREFERENCE:
            if name in self.methods:
                return name
        return next(iter(sorted(self.methods)), None)

    @property
    def primary_share(self) -> np.ndarray:
        """Share of the class logit per concept by the primary method.

        Without any importance artefact, falls back to each concept's share of the total
        coefficient mass (the order of the bank) so that the atlas can still be built.
        """
        method = self.primary_method
        if method is not None:
            return np.asarray(self.methods[method].share, dtype=np.float64)
        mass = np.abs(self.coefficients).sum(axis=0).astype(np.float64)  # zeros when not loaded
        total = mass.sum()
        return mass / total if total > 0 else np.full(self.n_concepts, 1.0 / max(self.n_concepts, 1))

    @property
    def order(self) -> np.ndarray:
        """Concept indices sorted by decreasing primary share (stable on ties)."""
        return np.argsort(-self.primary_share, kind="stable")

    @property
    def input_size(self) -> int:
        prep = self.act_attrs.get("preprocessing") or {}
        size = prep.get("input_size") if isinstance(prep, dict) else None
        if isinstance(size, (list, tuple)):
            size = size[-1]
        return int(size or 224)

    @property
    def grid(self) -> tuple[int, int] | None:
        grid = self.act_attrs.get("grid")
        if grid is None and self.presence is not None:
            return tuple(self.presence.shape[-2:])
        return tuple(int(v) for v in grid) if grid is not None else None


def list_run_classes(run: str | os.PathLike, *, classes: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Classes of a run that have activations and concepts: sorted ``(class_id, stem)`` pairs.

    ``classes`` (class ids or file stems) keeps only those; a name the run lacks raises. A damaged file of either
    stage is an error naming it (never a class silently left out).
    """
    folder = RunFolder(run)
    if not (folder.path / STAGE_FOLDERS["extract"]).is_dir():
        raise ConceptsError(f"{run} has no {STAGE_FOLDERS['extract']}/ folder; run `concepts extract` first")
    extracted = folder.scan("extract").check().found
    factorized = folder.scan("factorize").check().found
    folder.scan("importance").check()
    found = sorted((class_id, path.stem) for class_id, path in extracted.items() if class_id in factorized)
    if classes is None:
        _check_current(folder, [c for c, _ in found])
        return found
    by_name = {stem: (cid, stem) for cid, stem in found}
    by_name.update({cid: (cid, stem) for cid, stem in found})  # an id wins over a stem
    classes = list(classes)
    unknown = [name for name in classes if name not in by_name]
    if unknown:
        raise ConceptsError(f"unknown class(es) {', '.join(map(str, unknown))}; the run has "
                            f"{', '.join(cid for cid, _ in found[:10])}{' ...' if len(found) > 10 else ''}")
    chosen = sorted({by_name[name] for name in classes})
    _check_current(folder, [c for c, _ in chosen])
    return chosen


def _check_current(folder: RunFolder, class_ids: list[str]) -> None:
    """Refuse (one line naming the class, the stale stage and the command) a class whose concepts or importance
    were computed from other inputs than the files now on disk: never pair new inputs with old outputs."""
    from .lineage import stale_error

    statuses = folder.status()
    for class_id in class_ids:
        status = statuses[class_id]
        stage = status.first_problem(allow_missing=("importance",))
        if stage is not None:
            others = [c for c in class_ids if statuses[c].first_problem(allow_missing=("importance",))]
            error = stale_error(status, stage, folder.path)
            if len(others) > 1:
                error = type(error)(f"{error} ({len(others)} classes need it: {', '.join(others[:5])}"
                                    f"{' ...' if len(others) > 5 else ''})")
            raise error


def load_class(run: str | os.PathLike, class_id: str, *, with_maps: bool = True,
               with_coefficients: bool = True) -> ClassData:
    """Read the artefacts of one class into a :class:`ClassData`.

    ``with_maps=False`` skips ``/maps/presence``; ``with_coefficients=False`` skips the (rows x r)
    coefficients (then ``coefficients`` is an empty (0, r) array): enough for tables and banks.
    ``presence`` and ``contribution`` are the importance file's concept maps (None without ``with_maps``).
    """
    folder = RunFolder(run)
    with folder.activations(class_id) as cache:
        act_attrs = dict(cache.attrs)
        images = cache.images
        row_image = np.asarray(cache.row_image, dtype=np.int64)
        row_box = np.asarray(cache.row_box, dtype=np.int64)
        path = cache.path
    concepts = folder.concepts(class_id, coefficients=with_coefficients)
    r = concepts.n_concepts
    paths = {stage: folder.file(stage, class_id) for stage in STAGE_FOLDERS}
    methods: dict[str, MethodImportance] = {}
    importance_attrs: dict[str, Any] = {}
    presence = contribution = subconcepts = None
    fidelity_attrs: dict[str, Any] = {}
    maps_attrs: dict[str, Any] = {}
    if paths["importance"].exists():
        importance = folder.importance(class_id, maps=with_maps)
        importance_attrs, methods, presence = importance.attrs, importance.methods, importance.presence
        contribution, fidelity_attrs, maps_attrs = importance.contribution, importance.fidelity_attrs, \
            importance.maps_attrs
        subconcepts = importance.subconcepts
    coefficients = concepts.coefficients if with_coefficients else np.zeros((0, r), np.float32)
    if with_coefficients and coefficients.shape != (len(row_image), r):
        raise ArtefactError(f"{paths['factorize']}: coefficients have shape {coefficients.shape}, expected "
                            f"({len(row_image)}, {r}) from the activations rows and the concept bank")
    for method in methods.values():
        if method.share.shape != (r,):
            raise ArtefactError(f"{paths['importance']}: /{method.method}/share has shape {method.share.shape}, "
                                f"expected ({r},)")
    class_id = str(act_attrs.get("class_id", class_id))
    return ClassData(
        class_id=class_id, class_name=str(act_attrs.get("class_name") or class_id),
        # the logit explained: the importance file's (a run's trained probe may define it after extraction)
        class_index=int(importance_attrs.get("class_index", act_attrs.get("class_index", -1))), stem=path.stem,
        paths=paths, act_attrs=act_attrs,
        concept_attrs=concepts.attrs, importance_attrs=importance_attrs, image_paths=images["path"],
        image_sha256=images["sha256"], skipped=np.asarray(images["skipped"], bool),
        logit=np.asarray(images["logit"], np.float32), row_image=row_image, row_box=row_box,
        components=concepts.components, coefficients=coefficients, methods=methods, presence=presence,
        tree=concepts.tree, subconcepts=subconcepts,
        contribution=contribution, predicted=_ints(images.get("predicted"), len(images["path"]), -1),
        image_width=_ints(images.get("width"), len(images["path"]), 0),
        image_height=_ints(images.get("height"), len(images["path"]), 0),
        fidelity_attrs=dict(fidelity_attrs), maps_attrs=dict(maps_attrs))


def _ints(values, n: int, fill: int) -> np.ndarray:
    """An integer column of the image table (``fill`` where a file of another writer lacks it)."""
    if values is None:
        return np.full(n, fill, np.int64)
    return np.asarray(values, np.int64)


def load_bank(run: str | os.PathLike, class_id: str) -> tuple[str, str, np.ndarray]:
    """``(class_id, class_name, components)`` of one class, reading its concepts file only."""
    record = RunFolder(run).concepts(class_id, coefficients=False)
    name = record.attrs.get("class_name") or class_id
    return str(record.attrs.get("class_id", class_id)), str(name), record.components


def resolve_image_path(run: str | os.PathLike, raw: str) -> Path | None:
    """Find the photo recorded as ``raw`` in ``images/path`` (None when it is not there).

    Extraction records absolute paths; a relative one is tried against the run folder and the
    current directory.
    """
    path = Path(raw)
    candidates = [path] if path.is_absolute() else [Path(run) / path, Path.cwd() / path]
    return next((c for c in candidates if c.exists()), None)


__all__ = ["ClassData", "MethodImportance", "list_run_classes", "load_class", "load_bank", "resolve_image_path",
           "safe_filename"]
