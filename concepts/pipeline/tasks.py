"""The units of work of ``concepts run``: a batch of classes (map) and the final reduce.

``process_classes`` runs extract -> factorize -> importance for a few classes, loading the model
once for the batch; each stage goes class by class, so one class's data is in memory at a time.
``reduce_run`` builds the atlas index and the exports from the per-class files.
Both are top-level functions of plain arguments so that they pickle to worker processes and
Slurm jobs.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..artefacts import stage_path
from ..errors import ConceptsError
from .config import RunConfig

STAGES = ("extract", "factorize", "importance")


@dataclass
class TaskSpec:
    """One task: a batch of classes of a run, with the resolved config."""

    config: RunConfig
    run: str
    classes: list[str]
    overwrite: bool = False
    progress: bool = True


@dataclass
class TaskResult:
    classes: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    load_s: float = 0.0
    peak_rss_mb: float = 0.0
    host: str = ""
    pid: int = 0


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def class_done(run: str | os.PathLike, class_id: str) -> bool:
    """Every per-class stage file exists (what a finished class looks like on disk)."""
    return all(stage_path(run, stage, class_id).exists() for stage in STAGES)


def _device(cfg: RunConfig) -> str | None:
    return None if cfg.model.device == "auto" else cfg.model.device


def _check_layout(cfg: RunConfig, split: Any) -> None:
    """The cut gives the layout the config expects (``model.layout``), before any work is done."""
    if cfg.model.layout not in ("auto", split.layout):
        raise ConceptsError(
            f"config: model.layout: {cfg.model.layout!r} expected but the model's cut gives {split.layout!r}; "
            f"set model.layout to auto or {split.layout}"
        )


_SPLITS: dict[tuple, tuple[Any, Any]] = {}


def _load_split_cached(cfg: RunConfig, device: str | None) -> tuple[Any, Any]:
    """Load the model split once per process (tasks run in-process reuse it)."""
    from ..models import load_split

    key = (cfg.model.name, cfg.model.checkpoint, cfg.model.layer, device)
    if key not in _SPLITS:
        _SPLITS.clear()  # one model in memory at a time
        _SPLITS[key] = load_split(cfg.model.name, cfg.model.checkpoint, cfg.model.layer, device)
    return _SPLITS[key]


def release_models() -> None:
    """Forget the model kept by :func:`_load_split_cached` (the next task loads it again)."""
    _SPLITS.clear()


def process_classes(spec: TaskSpec) -> TaskResult:
    """Run extract, factorize and importance for ``spec.classes``, loading the model once for the batch.

    Each stage skips the classes whose file it already made with the same settings (config hash)
    and refuses a file made with other settings unless ``overwrite``. Returns the seconds per stage.
    """
    from ..extract import extract_run
    from ..factorize import factorize_run
    from ..importance import importance_run
    from ..runtime import set_threads

    cfg, run = spec.config, spec.run
    set_threads(cfg.executor.threads)
    result = TaskResult(classes=list(spec.classes), host=os.uname().nodename, pid=os.getpid())
    device = _device(cfg)
    t0 = time.perf_counter()
    split, info = _load_split_cached(cfg, device)
    result.load_s = time.perf_counter() - t0
    _check_layout(cfg, split)

    # 1. extract
    t0 = time.perf_counter()
    extract_run(
        cfg.data.images, run, model=cfg.model.name, checkpoint=cfg.model.checkpoint, layer=cfg.model.layer,
        mode=cfg.extract.mode, patch_size=cfg.extract.patch_size, classes=list(spec.classes),
        max_images=cfg.data.max_images, labels=cfg.data.labels, batch_size=cfg.extract.batch_size,
        workers=cfg.extract.workers, device=device, precision=cfg.model.precision,
        threads=cfg.executor.threads, dtype=cfg.extract.dtype, overwrite=spec.overwrite,
        progress=spec.progress, split=split, info=info,
    )
    # classes without any readable image get no activations file: nothing more to do for them
    todo = [c for c in spec.classes if stage_path(run, "extract", c).exists()]
    result.seconds["extract"] = time.perf_counter() - t0

    # 2. factorize
    t0 = time.perf_counter()
    if todo:
        factorize_run(
            run, method=cfg.factorize.method, n_concepts=cfg.factorize.n_concepts, seed=cfg.factorize.seed,
            classes=todo, device=device, overwrite=spec.overwrite, progress=spec.progress,
            **dict(cfg.factorize.params),
        )
    result.seconds["factorize"] = time.perf_counter() - t0

    # 3. importance
    t0 = time.perf_counter()
    if todo:
        importance_run(
            run, methods=tuple(cfg.importance.methods), designs=cfg.importance.designs, classes=todo,
            device=device, overwrite=spec.overwrite, progress=spec.progress, split=split,
            **dict(cfg.importance.params),
        )
    result.seconds["importance"] = time.perf_counter() - t0
    result.peak_rss_mb = peak_rss_mb()
    return result


def reduce_run(cfg: RunConfig, run: str, classes: list[str], progress: bool = True) -> dict[str, Any]:
    """Build the atlas index and the exports of ``classes`` from their per-class files."""
    seconds: dict[str, float] = {}
    outputs: dict[str, str] = {}
    if cfg.atlas.enabled:
        from ..atlas import build_atlas

        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"classes": classes, "progress": progress}
        if cfg.atlas.top_k is not None:
            kwargs["top_k"] = cfg.atlas.top_k
        outputs["atlas"] = str(build_atlas(run, **kwargs))
        seconds["atlas"] = time.perf_counter() - t0
    if cfg.export.enabled:
        from ..export import export_run

        t0 = time.perf_counter()
        outputs["export"] = str(export_run(run, formats=tuple(cfg.export.formats), classes=classes))
        seconds["export"] = time.perf_counter() - t0
    return {"seconds": seconds, "outputs": outputs}


def task_batches(classes: list[str], per_task: int) -> list[list[str]]:
    """Split ``classes`` into consecutive batches of at most ``per_task``."""
    per_task = max(1, int(per_task))
    return [classes[i : i + per_task] for i in range(0, len(classes), per_task)]
