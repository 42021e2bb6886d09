"""``concepts run``: extract -> factorize -> importance (-> fviz) for every class, then atlas and exports.

The driver resolves the classes, saves the resolved config as ``RUN/config.yaml``, splits the
unfinished classes into tasks of ``executor.classes_per_task`` classes, hands them to an
executor (local or Slurm) and finally runs the reduce step (atlas index + exports) here.

Resuming: a class whose three stage files exist is finished and is not given to any task; in a
task, each stage skips the files it already made with the same settings (config hash). When the
saved config differs from the new one in a section that changes results, every class is given
to a task and the stages refuse the old artefacts (config hash mismatch) unless ``overwrite``.
``RUN/pipeline/state.json`` keeps the signature of the last complete reduce step, so rerunning a
finished run does no work and says so.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConceptsError
from ..schema import config_hash, read_json, write_json
from ..settings import RunConfig, config_from_dict
from .executors import Executor, LocalExecutor, SlurmExecutor
from .tasks import TaskSpec, class_done, peak_rss_mb, process_classes, reduce_run, task_batches

# Sections whose change alters the per-class artefacts (data.classes only selects).
WORK_KEYS = ("model", "extract", "factorize", "importance")
WORK_DATA_KEYS = ("images", "max_images", "labels")


@dataclass
class PipelineResult:
    """What a call of :func:`run_pipeline` did."""

    run: Path
    classes: list[str]
    processed: list[str] = field(default_factory=list)  # classes given to tasks this time
    skipped: list[str] = field(default_factory=list)  # classes already finished
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
            return f"nothing to do: all {len(self.classes)} classes and the reduce step are finished in {self.run}"
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return (
            f"done: {len(self.processed)} classes processed, {len(self.skipped)} already finished, "
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


def select_classes(cfg: RunConfig) -> list[str]:
    """The class ids the run covers, in sorted order (unknown classes raise)."""
    from ..datasets import discover

    found = discover(cfg.data.images, list(cfg.data.classes) if cfg.data.classes else None, cfg.data.max_images)
    return [c.class_id for c in found if c.files]


def work_signature(cfg: RunConfig) -> str:
    raw = cfg.to_dict()
    part = {k: raw[k] for k in WORK_KEYS}
    part["data"] = {k: raw["data"][k] for k in WORK_DATA_KEYS}
    if cfg.fviz.enabled:  # an optional stage: its settings matter only when it runs
        part["fviz"] = raw["fviz"]
    return config_hash(part)


def reduce_signature(cfg: RunConfig, classes: list[str]) -> str:
    raw = cfg.to_dict()
    return config_hash({"work": work_signature(cfg), "atlas": raw["atlas"], "export": raw["export"],
                        "classes": sorted(classes)})


def make_executor(cfg: RunConfig, run: Path, progress: bool = True) -> Executor:
    ex = cfg.executor
    if ex.kind == "slurm":
        return SlurmExecutor(
            run / "slurm", partition=ex.partition, gpus_per_task=ex.gpus_per_task, cpus_per_task=ex.cpus_per_task,
            mem_gb=ex.mem_gb, timeout_min=ex.timeout_min, array_parallelism=ex.array_parallelism,
            account=ex.account, qos=ex.qos, setup=ex.setup, python=ex.python, progress=progress,
        )
    return LocalExecutor(workers=ex.workers, threads=ex.threads, device=cfg.model.device)


def run_pipeline(
    config: RunConfig | dict[str, Any],
    *,
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
) -> PipelineResult:
    """Run every stage for every selected class of ``config`` and return what was done.

    ``executor`` overrides the one the config names (``executor.kind``).
    """
    start = time.perf_counter()
    cfg = config if isinstance(config, RunConfig) else config_from_dict(config)
    cfg = resolve_paths(cfg)
    run = Path(cfg.out)
    classes = select_classes(cfg)
    if not classes:
        raise ConceptsError(f"no class with images found in {cfg.data.images}")
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / "pipeline" / "state.json"
    state = read_json(state_path, {})

    # Changed settings: let the stages compare config hashes instead of trusting file existence.
    previous_cfg = run / "config.yaml"
    verify = False
    if previous_cfg.exists() and not overwrite:
        try:
            old = config_from_dict(yaml.safe_load(previous_cfg.read_text()))
            verify = work_signature(old) != work_signature(cfg)
        except (ConceptsError, yaml.YAMLError):  # an unreadable saved config: compare the files themselves
            verify = True
    if not verify:  # with changed settings, save only once the stages accepted them
        cfg.save(run / "config.yaml")

    finished = [] if (overwrite or verify) else [c for c in classes if class_done(run, c, cfg)]
    todo = [c for c in classes if c not in set(finished)]
    result = PipelineResult(run=run, classes=classes, skipped=finished)
    reduce_sig = reduce_signature(cfg, classes)
    if not todo and not overwrite and state.get("reduce_signature") == reduce_sig:
        result.nothing_to_do = True
        result.total_s = time.perf_counter() - start
        _say(result.summary(), progress)
        return result

    if finished:
        _say(f"{len(finished)} of {len(classes)} classes already finished; {len(todo)} to do", progress)
    if todo:
        executor = executor or make_executor(cfg, run, progress)
        in_process = isinstance(executor, LocalExecutor) and executor.plan()[0] == 1
        batches = task_batches(todo, cfg.executor.classes_per_task)
        specs = [TaskSpec(cfg, str(run), batch, overwrite=overwrite, progress=progress and in_process)
                 for batch in batches]
        _say(f"running {len(todo)} classes in {len(specs)} task(s) on {executor.describe()}", progress)
        results = executor.map(process_classes, specs)
        if verify:
            cfg.save(run / "config.yaml")
        result.processed = list(todo)
        result.tasks = len(specs)
        for task in results:
            for stage, seconds in task.seconds.items():
                result.seconds[stage] = result.seconds.get(stage, 0.0) + seconds
            result.load_s += task.load_s
            result.peak_rss_mb = max(result.peak_rss_mb, task.peak_rss_mb)
        missing = [c for c in todo if not class_done(run, c, cfg)]
        if missing:
            _say(f"warning: {len(missing)} classes produced no result (no readable image?): "
                 f"{', '.join(missing[:5])}", progress)

    done = [c for c in classes if class_done(run, c)]  # the atlas and exports need the three core stages
    if done and (cfg.atlas.enabled or cfg.export.enabled):
        t0 = time.perf_counter()
        reduced = reduce_run(cfg, str(run), done, progress=progress)
        result.seconds.update(reduced["seconds"])
        result.outputs = reduced["outputs"]
        result.reduced = True
        _say(f"reduce: {len(done)} classes -> {', '.join(reduced['outputs'].values()) or 'nothing'} "
             f"({time.perf_counter() - t0:.1f}s)", progress)
    write_json(state_path, {"reduce_signature": reduce_sig if len(done) == len(classes) else None})
    result.total_s = time.perf_counter() - start
    result.peak_rss_mb = max(result.peak_rss_mb, peak_rss_mb())
    write_json(run / "pipeline" / "last_run.json", {
        "processed": result.processed, "skipped": result.skipped, "seconds": result.seconds,
        "total_s": result.total_s, "load_s": result.load_s, "peak_rss_mb": result.peak_rss_mb,
        "tasks": result.tasks,
    })
    _say(result.summary(), progress)
    return result
