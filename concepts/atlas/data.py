"""Read one class of a run (activations, concepts, importance) into plain numpy arrays.

Only the artefact contract of ``docs/ARCHITECTURE.md`` is used, so the atlas and the exports
work on any run folder that follows it, whatever produced it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from ..artefacts import STAGE_DIRS, read_attrs, read_strings
from ..errors import ConceptsError

#: Preference order of the importance methods used to rank concepts.
METHOD_PREFERENCE = ("sobol", "gradient", "occlusion")


@dataclass
class MethodImportance:
    """Importance of the concepts of one class by one method (arrays straight from the file)."""

    method: str
    share: np.ndarray  # (r,) normalised, sums to 1
    class_importance: np.ndarray  # (r,) raw
    per_image: np.ndarray | None  # (n_images, r)
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None
    attrs: dict[str, Any] = field(default_factory=dict)
    share_ci_low: np.ndarray | None = None  # (r,) interval of the share, when the method gives one
    share_ci_high: np.ndarray | None = None


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


def _stage_dir(run: Path, stage: str) -> Path:
    return run / STAGE_DIRS[stage]


def list_run_classes(run: str | os.PathLike, *, classes: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Classes of a run that have activations and concepts: sorted ``(class_id, stem)`` pairs.

    ``classes`` (class ids or file stems) keeps only those; a name the run lacks raises.
    """
    run = Path(run)
    act_dir = _stage_dir(run, "extract")
    if not act_dir.is_dir():
        raise ConceptsError(f"{run} has no {STAGE_DIRS['extract']}/ folder; run `concepts extract` first")
    found: list[tuple[str, str]] = []
    for path in sorted(act_dir.glob("*.h5")):
        stem = path.stem
        if not (_stage_dir(run, "factorize") / f"{stem}.h5").exists():
            continue
        try:
            with h5py.File(path, "r") as handle:
                class_id = handle.attrs.get("class_id", stem)
        except OSError as exc:
            raise ConceptsError(f"{path} is unreadable ({exc})") from exc
        if isinstance(class_id, bytes):
            class_id = class_id.decode()
        found.append((str(class_id), stem))
    found.sort()
    if classes is None:
        return found
    by_name = {stem: (cid, stem) for cid, stem in found}
    by_name.update({cid: (cid, stem) for cid, stem in found})  # an id wins over a stem
    classes = list(classes)
    unknown = [name for name in classes if name not in by_name]
    if unknown:
        raise ConceptsError(f"unknown class(es) {', '.join(map(str, unknown))}; the run has "
                            f"{', '.join(cid for cid, _ in found[:10])}{' ...' if len(found) > 10 else ''}")
    return sorted({by_name[name] for name in classes})


def _read_opt(group: h5py.Group, name: str, dtype=np.float32) -> np.ndarray | None:
    return np.asarray(group[name][()], dtype=dtype) if name in group else None


def load_class(run: str | os.PathLike, stem: str, *, with_maps: bool = True,
               with_coefficients: bool = True) -> ClassData:
    """Read the artefacts of one class (by file stem) into a :class:`ClassData`.

    ``with_maps=False`` skips ``/maps/presence``; ``with_coefficients=False`` skips the (rows x r)
    coefficients (then ``coefficients`` is an empty (0, r) array): enough for tables and banks.
    """
    run = Path(run)
    paths = {stage: _stage_dir(run, stage) / f"{stem}.h5" for stage in STAGE_DIRS}
    for stage in ("extract", "factorize"):
        if not paths[stage].exists():
            raise ConceptsError(f"{paths[stage]} is missing; run `concepts {stage}` first")
    try:
        with h5py.File(paths["extract"], "r") as handle:
            act_attrs = read_attrs(handle)
            images = handle["images"]
            image_paths = read_strings(images["path"])
            sha = read_strings(images["sha256"])
            skipped = np.asarray(images["skipped"][()], dtype=bool)
            logit = np.asarray(images["logit"][()], dtype=np.float32)
            row_image = np.asarray(handle["rows/image"][()], dtype=np.int64)
            row_box = np.asarray(handle["rows/box"][()], dtype=np.int64)
        with h5py.File(paths["factorize"], "r") as handle:
            concept_attrs = read_attrs(handle)
            components = np.asarray(handle["components"][()], dtype=np.float32)
            if with_coefficients:
                coefficients = np.asarray(handle["coefficients"][()], dtype=np.float32)
            else:
                coefficients = np.zeros((0, handle["components"].shape[0]), np.float32)
        methods: dict[str, MethodImportance] = {}
        importance_attrs: dict[str, Any] = {}
        presence = None
        if paths["importance"].exists():
            with h5py.File(paths["importance"], "r") as handle:
                importance_attrs = read_attrs(handle)
                for name in sorted(handle.keys()):
                    group = handle[name]
                    if not isinstance(group, h5py.Group) or "share" not in group:
                        continue
                    methods[name] = MethodImportance(
                        method=name,
                        share=np.asarray(group["share"][()], dtype=np.float32),
                        class_importance=np.asarray(group["class_importance"][()], dtype=np.float32),
                        per_image=_read_opt(group, "per_image"),
                        ci_low=_read_opt(group, "ci_low"),
                        ci_high=_read_opt(group, "ci_high"),
                        attrs=read_attrs(group),
                        share_ci_low=_read_opt(group, "share_ci_low"),
                        share_ci_high=_read_opt(group, "share_ci_high"),
                    )
                if with_maps and "maps" in handle and "presence" in handle["maps"]:
                    presence = np.asarray(handle["maps/presence"][()], dtype=np.float32)
    except (OSError, KeyError) as exc:
        raise ConceptsError(f"the artefacts of class file '{stem}' in {run} are incomplete or unreadable ({exc})") from exc

    r = components.shape[0]
    if with_coefficients and coefficients.shape != (len(row_image), r):
        raise ConceptsError(
            f"{paths['factorize']}: coefficients have shape {coefficients.shape}, expected "
            f"({len(row_image)}, {r}) from the activations rows and the concept bank"
        )
    for method in methods.values():
        if method.share.shape != (r,):
            raise ConceptsError(f"{paths['importance']}: /{method.method}/share has shape "
                                f"{method.share.shape}, expected ({r},)")
    class_id = str(act_attrs.get("class_id", stem))
    return ClassData(
        class_id=class_id,
        class_name=str(act_attrs.get("class_name") or class_id),
        class_index=int(act_attrs.get("class_index", -1)),
        stem=stem,
        paths=paths,
        act_attrs=act_attrs,
        concept_attrs=concept_attrs,
        importance_attrs=importance_attrs,
        image_paths=image_paths,
        image_sha256=sha,
        skipped=skipped,
        logit=logit,
        row_image=row_image,
        row_box=row_box,
        components=components,
        coefficients=coefficients,
        methods=methods,
        presence=presence,
    )


def load_bank(run: str | os.PathLike, stem: str) -> tuple[str, str, np.ndarray]:
    """``(class_id, class_name, components)`` of one class, reading nothing else."""
    run = Path(run)
    act = _stage_dir(run, "extract") / f"{stem}.h5"
    con = _stage_dir(run, "factorize") / f"{stem}.h5"
    try:
        with h5py.File(act, "r") as handle:
            attrs = {k: handle.attrs.get(k) for k in ("class_id", "class_name")}
        with h5py.File(con, "r") as handle:
            components = np.asarray(handle["components"][()], dtype=np.float32)
    except (OSError, KeyError) as exc:
        raise ConceptsError(f"the artefacts of class file '{stem}' in {run} are unreadable ({exc})") from exc
    names = [v.decode() if isinstance(v, bytes) else (None if v is None else str(v)) for v in attrs.values()]
    class_id = names[0] or stem
    return class_id, names[1] or class_id, components


def resolve_image_path(run: str | os.PathLike, raw: str) -> Path | None:
    """Find the photo recorded as ``raw`` in ``images/path`` (None when it is not there).

    Extraction records absolute paths; a relative one is tried against the run folder and the
    current directory.
    """
    path = Path(raw)
    candidates = [path] if path.is_absolute() else [Path(run) / path, Path.cwd() / path]
    return next((c for c in candidates if c.exists()), None)
