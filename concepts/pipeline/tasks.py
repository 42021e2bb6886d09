"""The units of work of ``concepts run``: a batch of classes (map) and the final reduce.

``process_classes`` runs extract -> factorize -> importance (-> fviz when enabled) for a few classes, loading the
model once for the batch; each stage goes class by class, so one class's data is in memory at a time.
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
from pathlib import Path
from typing import Any

from ..schema import STAGES, stage_path
from ..settings import RunConfig


@dataclass
class TaskSpec:
    """One task: a batch of classes of a run, with the resolved config."""

    config: RunConfig
    run: str
    classes: list[str]
    overwrite: bool = False
    progress: bool = True
    stages: tuple[str, ...] = STAGES  # a dataset-scope run splits them: extract, then the dictionary, then the rest


@dataclass
class TaskResult:
    classes: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    load_s: float = 0.0
    peak_rss_mb: float = 0.0
    host: str = ""
    pid: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # class -> why a stage skipped it
    warnings: dict[str, dict[str, str]] = field(default_factory=dict)  # "stage:kind" -> class -> detail


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_stages(cfg: RunConfig | None = None) -> tuple[str, ...]:
    """The per-class stages of a run: the three of every run, and fviz when it is enabled."""
    return STAGES + (("fviz",) if cfg is not None and cfg.fviz.enabled else ())


def class_done(run: str | os.PathLike, class_id: str, stages: tuple[str, ...] = STAGES) -> bool:
    """Every per-class file of ``stages`` exists (what a finished class looks like on disk)."""
    return all(stage_path(run, stage, class_id).exists() for stage in stages)


_MODELS: dict[str, Any] = {}


def model_cache(cfg: RunConfig):
    """The process's model cache of the pipeline (tasks run in one process share the loaded model)."""
    from ..models import ModelCache

    device = None if cfg.model.device == "auto" else cfg.model.device
    cache = _MODELS.get(str(device))
    if cache is None:
        _MODELS.clear()  # one model in memory at a time
        cache = _MODELS[str(device)] = ModelCache(device)
    return cache


def release_models() -> None:
    """Forget the model the pipeline keeps (the next task loads it again)."""
    _MODELS.clear()


def process_classes(spec: TaskSpec) -> TaskResult:
    """Run the stages ``spec.stages`` (extract, factorize, importance, and fviz when enabled) for ``spec.classes``,
    loading the model once.

    Each stage skips the classes whose file it already made with the same settings and inputs, recomputes stale
    ones, and refuses a file made with other settings unless ``overwrite``. Returns the seconds per stage. At
    dataset scope, factorize writes the classes' views of the shared dictionary (fitted before, by
    :func:`fit_shared_dictionary`).
    """
    from ..extract import extract_run
    from ..factorize import factorize_run
    from ..importance import importance_run

    cfg = spec.config.replace(**{"data.classes": list(spec.classes)})
    run = spec.run
    result = TaskResult(classes=list(spec.classes), host=os.uname().nodename, pid=os.getpid())
    models = model_cache(cfg)
    common = dict(overwrite=spec.overwrite, progress=spec.progress)
    reports = []
    if "extract" in spec.stages or "importance" in spec.stages:
        t0 = time.perf_counter()
        models.get(cfg.model.name, cfg.model.checkpoint, cfg.model.main_layer, cfg.model.pretrained,
                   keep=tuple(layer for layer in cfg.model.layers if layer))
        result.load_s = time.perf_counter() - t0
    if "extract" in spec.stages:
        t0 = time.perf_counter()
        reports.append(extract_run(None, None, config=cfg, models=models, **common))
        result.seconds["extract"] = time.perf_counter() - t0
    # classes without any readable image get no activations file: nothing more to do for them
    todo = [c for c in spec.classes if stage_path(run, "extract", c).exists()]
    if "factorize" in spec.stages and todo:
        t0 = time.perf_counter()
        if cfg.factorize.scope == "dataset":
            from ..factorize.shared import write_views
            from ..schema import RunFolder

            reports.append(write_views(RunFolder(run), cfg, todo, **common))
        else:
            reports.append(factorize_run(run, config=cfg, classes=todo, warn=False, **common))
        result.seconds["factorize"] = time.perf_counter() - t0
    todo = [c for c in todo if stage_path(run, "factorize", c).exists()]
    if "importance" in spec.stages and todo:
        t0 = time.perf_counter()
        reports.append(importance_run(run, config=cfg, classes=todo, models=models, **common))
        result.seconds["importance"] = time.perf_counter() - t0
    if "importance" in spec.stages and cfg.fviz.enabled and todo:  # the optional stage, after importance
        from ..fviz import fviz_run

        t0 = time.perf_counter()
        reports.append(fviz_run(run, config=cfg, classes=todo, models=models, **common))
        result.seconds["fviz"] = time.perf_counter() - t0
    for report in reports:
        result.skipped.update({c: f"{report.stage}: {why}" for c, why in report.skipped.items()})
        for kind, details in report.warnings.items():
            result.warnings.setdefault(f"{report.stage}:{kind}", {}).update(details)
    result.peak_rss_mb = peak_rss_mb()
    return result


def fit_shared_dictionary(spec: TaskSpec) -> TaskResult:
    """The dataset-scope dictionary of ``spec.classes`` (one task: on Slurm, one job)."""
    from ..factorize.shared import ensure_dictionary
    from ..schema import RunFolder

    cfg = spec.config.replace(**{"data.classes": list(spec.classes)})
    result = TaskResult(classes=list(spec.classes), host=os.uname().nodename, pid=os.getpid())
    t0 = time.perf_counter()
    ensure_dictionary(RunFolder(spec.run), cfg, overwrite=spec.overwrite, progress=spec.progress)
    result.seconds["dictionary"] = time.perf_counter() - t0
    result.peak_rss_mb = peak_rss_mb()
    return result


def reduce_run(cfg: RunConfig, run: str, classes: list[str], progress: bool = True) -> dict[str, Any]:
    """Build the atlas index and the exports of ``classes`` from their per-class files."""
    seconds: dict[str, float] = {}
    outputs: dict[str, str] = {}
    if cfg.atlas.enabled:
        from ..atlas import build_atlas

        t0 = time.perf_counter()
        outputs["atlas"] = str(build_atlas(run, config=cfg, classes=classes, progress=progress))
        seconds["atlas"] = time.perf_counter() - t0
    if cfg.export.enabled:
        t0 = time.perf_counter()
        for layer, folder in export_layers(cfg, run, classes, progress).items():
            outputs["export" if layer == cfg.model.main_layer else f"export {layer}"] = str(folder)
        seconds["export"] = time.perf_counter() - t0
    return {"seconds": seconds, "outputs": outputs}


def export_layers(cfg: RunConfig, run: str, classes: list[str], progress: bool = True) -> dict[Any, Path]:
    """The exports of every layer of the run's config, each where ``concepts export RUN --layer L`` writes it
    (the main layer's in ``RUN/exports``, another's in its sub-run, :meth:`~concepts.schema.RunFolder.at_layer`);
    layer -> its export folder."""
    from ..export import export_run

    out = {}
    for layer in cfg.model.layers:
        one = cfg.replace(**{"model.layer": [layer] if layer is not None else None})
        out[layer] = export_run(run, config=one, formats=tuple(cfg.export.formats), classes=classes,
                                progress=progress)
    return out


def task_batches(classes: list[str], per_task: int) -> list[list[str]]:
    """Split ``classes`` into consecutive batches of at most ``per_task``."""
    per_task = max(1, int(per_task))
    return [classes[i : i + per_task] for i in range(0, len(classes), per_task)]
