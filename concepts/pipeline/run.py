"""``concepts run``: extract -> factorize -> importance (-> fviz) for every class, then atlas and exports.

The driver resolves the classes, checks which are finished on the files themselves (:mod:`concepts.pipeline.plan`:
settings, lineage, image lists; a file made with other settings is refused before any model loads), splits the
others into tasks of ``executor.classes_per_task`` classes, hands them to an executor (local or Slurm), saves the
resolved config as ``RUN/config.yaml`` once the stages accepted it, and finally runs the reduce step (atlas +
exports) here. ``RUN/pipeline/state.json`` keeps the signature of the last complete reduce step (the settings of
atlas and exports, and the identity of every class file), so rerunning a finished run does no work and says so.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets import discover
from ..errors import ConceptsError
from ..schema import RunFolder, STAGES, config_hash, identity, read_json, write_json
from ..schema.hdf5 import peek_attrs
from ..settings import RunConfig, config_from_dict
from ..text import plural
from .executors import Executor, LocalExecutor, SlurmExecutor
from .plan import class_finished
from .tasks import (TaskSpec, class_done, fit_shared_dictionary, peak_rss_mb, process_classes, reduce_run, run_stages,
                    task_batches)


@dataclass
class PipelineResult:
    """What a call of :func:`run_pipeline` did."""

    run: Path
    classes: list[str]
    processed: list[str] = field(default_factory=list)  # classes given to tasks this time
    skipped: list[str] = field(default_factory=list)  # classes already finished
    skipped_classes: dict[str, str] = field(default_factory=dict)  # classes a stage had to skip, and why
    warnings: dict[str, dict[str, str]] = field(default_factory=dict)  # "stage:kind" -> class -> detail
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, summed over tasks
    total_s: float = 0.0
    load_s: float = 0.0
    peak_rss_mb: float = 0.0  # the largest of the driver and the tasks
    reduced: bool = False
    nothing_to_do: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    tasks: int = 0

    def summary(self) -> str:
        if self.nothing_to_do:
            return f"nothing to do: all {plural(len(self.classes), 'class')} and the reduce step are finished in {self.run}"
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        skipped = ""
        if self.skipped_classes:
            skipped = f"{len(self.skipped_classes)} skipped (" + "; ".join(
                f"{c}: {why}" for c, why in list(self.skipped_classes.items())[:5]) + "), "
        return (
            f"done: {plural(len(self.processed), 'class')} processed, {len(self.skipped)} already finished, {skipped}"
            f"{self.tasks} task(s), {self.total_s:.1f}s ({stages}); peak memory {self.peak_rss_mb:.0f} MiB; "
            f"run folder {self.run}"
        )


def _say(message: str, progress: bool) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


DEMO_IMAGES = "demo"


def resolve_paths(cfg: RunConfig) -> RunConfig:
    """Make the paths of the config absolute (they are relative to the current directory).

    ``data.images: demo`` stands for the offline demo photos, written into ``RUN/images``.
    """
    if not cfg.out:
        raise ConceptsError("config: out: no run folder; set `out:` in the config or pass --out DIR")
    if not cfg.data.images:
        raise ConceptsError("config: data.images: no image folder; set `data.images:` or pass --images DIR")
    out = Path(cfg.out).expanduser().resolve()
    images = cfg.data.images
    if images == DEMO_IMAGES:  # the photos bundled with scikit-image, written once into RUN/images
        from ..datasets.demo_photos import write_demo_images

        images = write_demo_images(out / "images")
    changes: dict[str, Any] = {"out": str(out), "data.images": str(Path(images).expanduser().resolve())}
    if cfg.data.labels:
        changes["data.labels"] = str(Path(cfg.data.labels).expanduser().resolve())
    if cfg.model.checkpoint:
        changes["model.checkpoint"] = str(Path(cfg.model.checkpoint).expanduser().resolve())
    if cfg.fviz.spectrum != "images":
        changes["fviz.spectrum"] = str(Path(cfg.fviz.spectrum).expanduser().resolve())
    return cfg.replace(**changes)


def select_classes(cfg: RunConfig) -> tuple[dict[str, list[Path]], list[str]]:
    """The classes the run covers and their image files, sorted by id (unknown classes raise), and the classes
    whose folder holds no file (listed as skipped, never dropped silently)."""
    found = discover(cfg.data.images, list(cfg.data.classes) if cfg.data.classes else None, cfg.data.max_images)
    return {c.class_id: c.files for c in found if c.files}, [c.class_id for c in found if not c.files]


def reduce_signature(cfg: RunConfig, folder: RunFolder, classes: list[str]) -> str:
    """What the atlas and exports were built from: their settings and the identity of every class file."""
    files = {}
    for class_id in classes:
        paths = [folder.file(stage, class_id) for stage in run_stages(cfg)]
        files[class_id] = [identity(peek_attrs(p)) if p.exists() else None for p in paths]
    raw = cfg.to_dict()
    return config_hash({"atlas": raw["atlas"], "export": raw["export"], "files": files})


def make_executor(cfg: RunConfig, run: Path, progress: bool = True) -> Executor:
    ex = cfg.executor
    if ex.kind == "slurm":
        return SlurmExecutor(
            run / "slurm", partition=ex.partition, gpus_per_task=ex.gpus_per_task, cpus_per_task=ex.cpus_per_task,
            mem_gb=ex.mem_gb, timeout_min=ex.timeout_min, array_parallelism=ex.array_parallelism,
            account=ex.account, qos=ex.qos, setup=ex.setup, python=ex.python, progress=progress,
        )
    return LocalExecutor(workers=ex.workers, threads=ex.threads, device=cfg.model.device)


def run_pipeline(config: RunConfig | dict[str, Any], *, overwrite: bool = False, progress: bool = True,
                 executor: Executor | None = None) -> PipelineResult:
    """Run every stage for every selected class of ``config`` and return what was done.

    ``executor`` overrides the one the config names (``executor.kind``).
    """
    start = time.perf_counter()
    cfg = resolve_paths(config if isinstance(config, RunConfig) else config_from_dict(config))
    run = Path(cfg.out)
    images, empty = select_classes(cfg)
    classes = list(images)
    if not classes:
        raise ConceptsError(f"no class with images found in {cfg.data.images}")
    run.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(run)
    finished = [] if overwrite else [c for c in classes if class_finished(cfg, folder, c, images[c])]
    todo = [c for c in classes if c not in set(finished)]
    result = PipelineResult(run=run, classes=classes, skipped=finished)
    if empty:
        result.skipped_classes.update({c: "its folder holds no image file" for c in empty})
        _say(f"warning: {plural(len(empty), 'class folder')} without any file, skipped: {', '.join(empty[:5])}"
             f"{' ...' if len(empty) > 5 else ''}", progress)
    state_path = run / "pipeline" / "state.json"
    if not todo and not overwrite and read_json(state_path, {}).get("reduce_signature") == \
            reduce_signature(cfg, folder, classes):
        cfg.save(run / "config.yaml")
        result.nothing_to_do, result.total_s = True, time.perf_counter() - start
        _say(result.summary(), progress)
        return result
    if finished:
        _say(f"{len(finished)} of {plural(len(classes), 'class')} already finished; {len(todo)} to do", progress)
    if todo:
        _run_tasks(cfg, run, todo, result, executor, overwrite, progress)
    cfg.save(run / "config.yaml")  # only once the stages accepted the settings: it describes the files on disk
    done = [c for c in classes if class_done(run, c)]
    if done and (cfg.atlas.enabled or cfg.export.enabled):
        t0 = time.perf_counter()
        reduced = reduce_run(cfg, str(run), done, progress=progress)
        result.seconds.update(reduced["seconds"])
        result.outputs, result.reduced = reduced["outputs"], True
        _say(f"reduce: {plural(len(done), 'class')} -> {', '.join(reduced['outputs'].values()) or 'nothing'} "
             f"({time.perf_counter() - t0:.1f}s)", progress)
    signature = reduce_signature(cfg, folder, classes) if len(done) == len(classes) else None
    write_json(state_path, {"reduce_signature": signature})
    result.total_s = time.perf_counter() - start
    result.peak_rss_mb = max(result.peak_rss_mb, peak_rss_mb())
    write_json(run / "pipeline" / "last_run.json", {
        "processed": result.processed, "skipped": result.skipped, "skipped_classes": result.skipped_classes,
        "warnings": result.warnings, "seconds": result.seconds, "total_s": result.total_s,
        "load_s": result.load_s, "peak_rss_mb": result.peak_rss_mb, "tasks": result.tasks})
    _say(result.summary(), progress)
    return result


def _run_tasks(cfg: RunConfig, run: Path, todo: list[str], result: PipelineResult, executor: Executor | None,
               overwrite: bool, progress: bool) -> None:
    """The classes ``todo`` through the stages, in tasks. At dataset scope: extract in tasks, then the shared
    dictionary in one task (on all the run's classes), then the class views and importance in tasks."""
    executor = executor or make_executor(cfg, run, progress)
    in_process = isinstance(executor, LocalExecutor) and executor.plan()[0] == 1

    def specs(classes, stages=STAGES):
        return [TaskSpec(cfg, str(run), batch, overwrite=overwrite, progress=progress and in_process, stages=stages)
                for batch in task_batches(classes, cfg.executor.classes_per_task)]

    _say(f"running {plural(len(todo), 'class')} on {executor.describe()}", progress)
    if cfg.factorize.scope == "dataset":
        results = executor.map(process_classes, specs(todo, ("extract",)))
        classes = [c for c in result.classes if class_done(run, c, ("extract",))]
        results += executor.map(fit_shared_dictionary, [TaskSpec(cfg, str(run), classes, overwrite=overwrite,
                                                                 progress=progress and in_process)])
        later = specs(classes, ("factorize", "importance"))
        results += executor.map(process_classes, later)
        result.tasks = len(results)
    else:
        batches = specs(todo)
        results = executor.map(process_classes, batches)
        result.tasks = len(batches)
    result.processed = list(todo)
    for task in results:
        for stage, seconds in task.seconds.items():
            result.seconds[stage] = result.seconds.get(stage, 0.0) + seconds
        result.load_s += task.load_s
        result.peak_rss_mb = max(result.peak_rss_mb, task.peak_rss_mb)
        result.skipped_classes.update(task.skipped)
        for kind, details in task.warnings.items():
            result.warnings.setdefault(kind, {}).update(details)
    if result.warnings:  # one line per kind of warning, however many classes
        from ..factorize.stage import warning_summary

        for kind, details in result.warnings.items():
            _say(warning_summary(kind.split(":", 1)[1], details), progress)
    missing = [c for c in todo if not class_done(run, c)]
    if missing:
        reasons = "; ".join(f"{c} ({result.skipped_classes.get(c, 'no result')})" for c in missing[:5])
        _say(f"warning: {plural(len(missing), 'class')} produced no result: {reasons}", progress)
