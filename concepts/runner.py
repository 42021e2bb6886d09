"""The per-class loop every stage runs: skip what is finished, recompute what is stale, write atomically, show
progress, list the classes that had to be skipped.

Each class file is written under its lock (:mod:`concepts.schema.locks`): a second writer of the same class waits,
then finds it done. A stage gives, per class, the file it writes, what it would write (:class:`~concepts.schema.lineage.Wanted`: the
settings, their hash and the identities of the inputs) and a function that computes and writes the file. The loop
decides with :func:`~concepts.schema.lineage.existing_status` and collects a :class:`StageReport`. A
:class:`~concepts.errors.ClassSkipped` raised for one class (no readable image, degenerate data) is listed and the
other classes go on; any other error stops the stage.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import ClassSkipped
from .schema.lineage import Wanted, existing_status
from .schema.locks import artefact_lock


def say(message: str, progress: bool = True) -> None:
    """A message on stderr that does not break a progress bar."""
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


@dataclass
class StageReport:
    """What one stage did: classes written (fresh or stale), already done, and skipped with the reason.

    It is also the sequence of the class files the stage holds (``len(report)``, ``report[0]``, ``list(report)``).
    """

    stage: str
    paths: dict[str, Path] = field(default_factory=dict)  # every class with a file now: class -> path
    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # written because an input had changed
    done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    layers: dict[str, "StageReport"] = field(default_factory=dict)  # several layers: the report of each other one
    warnings: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> class -> detail (e.g. unconverged)

    def summary(self, where: str = "") -> str:
        parts = [f"{len(self.written)} written" + (f" ({len(self.stale)} {'was' if len(self.stale) == 1 else 'were'} stale)" if self.stale else ""),
                 f"{len(self.done)} already done"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped: " + "; ".join(f"{c} ({why})" for c, why in
                                                                     list(self.skipped.items())[:5])
                         + (" ..." if len(self.skipped) > 5 else ""))
        text = f"{self.stage}: " + ", ".join(parts) + (f" in {where}" if where else "")
        for layer, report in self.layers.items():
            text += f"; layer {layer}: " + report.summary().split(": ", 1)[1]
        return text

    def files(self) -> list[Path]:
        """The class files the stage holds now (written or already done), in class order."""
        return [self.paths[c] for c in sorted(self.paths)]

    # a report is also the sequence of those files
    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self):
        return iter(self.files())

    def __getitem__(self, index):
        return self.files()[index]


@dataclass
class ClassJob:
    """One class of a stage: its id, the file it writes, what that file should be, and how to make it.

    ``more``: further files the same work writes (the other layers of a several-layer extraction), as
    ``(path, wanted)`` pairs; ``work`` is then called with ``{path: Wanted}`` of every file that is not done.
    """

    class_id: str
    path: Path
    wanted: Callable[[], Wanted]
    work: Callable[[Wanted], None]
    more: tuple = ()


def _run_job(job: ClassJob, stage: str, overwrite: bool, progress: bool) -> str:
    """Lock the job's files, decide, work; returns the class's status (``done``, ``todo`` or ``stale``)."""
    outputs = [(job.path, job.wanted), *job.more]
    with contextlib.ExitStack() as locks:
        for path in sorted({p for p, _ in outputs}):  # one order for every process: no deadlock
            locks.enter_context(artefact_lock(path, say=lambda m: say(m, progress)))
        wanted = {path: make() for path, make in outputs}
        status = {path: existing_status(path, w, overwrite, stage) for path, w in wanted.items()}
        todo = {path: w for path, w in wanted.items() if status[path] != "done"}
        if not todo:
            return "done"
        job.work(todo if job.more else wanted[job.path])
    return "stale" if "stale" in status.values() else "todo"


def run_classes(stage: str, jobs: Iterable[ClassJob], *, overwrite: bool = False, progress: bool = True,
                desc: str | None = None) -> StageReport:
    """Run ``jobs`` one class at a time (see the module docstring)."""
    from tqdm.auto import tqdm

    jobs = list(jobs)
    report = StageReport(stage)
    for job in tqdm(jobs, desc=desc or stage, unit="class", disable=not progress or len(jobs) < 2):
        try:
            status = _run_job(job, stage, overwrite, progress)
        except ClassSkipped as exc:
            report.skipped[job.class_id] = str(exc)
            say(f"warning: {stage}: class {job.class_id!r} skipped: {exc}", progress)
            continue
        report.paths[job.class_id] = job.path
        if status == "done":
            report.done.append(job.class_id)
            continue
        report.written.append(job.class_id)
        if status == "stale":
            report.stale.append(job.class_id)
    return report
