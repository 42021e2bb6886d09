"""Where the per-class tasks run: in this process, in one process per GPU, or as Slurm job arrays.

An executor has one method, ``map(fn, items) -> list`` (results in the order of ``items``), where
``fn`` is an importable top-level function taking one item. A failed task raises
:class:`~concepts.errors.ConceptsError` naming the task and where its error is logged, after the
other tasks have finished (their classes are kept; a rerun resumes).
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConceptsError


def visible_gpus() -> list[str]:
    """The GPU ids this process may use, as strings for CUDA_VISIBLE_DEVICES (empty without CUDA)."""
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - broken driver
        count = 0
    if count == 0:
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        ids = [v.strip() for v in listed.split(",") if v.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def probe(value: Any) -> dict[str, Any]:
    """A trivial task for tests: where it ran and ``value`` squared."""
    return {
        "value": value,
        "square": value * value,
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cwd": os.getcwd(),
    }


def fail_probe(value: Any) -> Any:
    """A task that fails, for tests of error reporting."""
    raise RuntimeError(f"probe failure for {value!r}")


class Executor:
    """Base class: ``map(fn, items)`` runs ``fn(item)`` for every item and returns the results in order."""

    name = "base"

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


# ----------------------------------------------------------------------------- local
_WORKER_DEVICE: str | None = None


def _init_worker(slots: Any, threads: int | None) -> None:
    """Pool initializer: claim a GPU slot (sets CUDA_VISIBLE_DEVICES before CUDA starts) and threads."""
    global _WORKER_DEVICE
    slot = slots.get()
    if slot is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot
        _WORKER_DEVICE = "cuda"
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


class LocalExecutor(Executor):
    """Run tasks on this machine.

    ``workers=1``: sequentially in this process (no pickling, progress bars shown).
    ``workers='auto'``: one worker process per visible GPU when there are two or more (and the
    device is not forced to CPU), else sequential in this process.
    ``workers=N``: N spawned worker processes; each takes one visible GPU when there are
    GPUs (N is capped at their number) and ``threads`` torch threads.
    """

    name = "local"

    def __init__(self, workers: int | str = "auto", threads: int | None = None, device: str | None = None):
        self.workers = workers
        self.threads = threads
        self.device = device

    def plan(self) -> tuple[int, list[str | None]]:
        """(number of processes, the GPU id of each or None): 1 process means in-process."""
        use_gpus = self.device in (None, "auto", "cuda")
        gpus = visible_gpus() if use_gpus else []
        if self.workers == "auto":
            n = len(gpus) if len(gpus) > 1 else 1
        else:
            n = int(self.workers)
            if gpus:
                n = min(n, len(gpus))
        slots: list[str | None] = list(gpus[:n]) if (gpus and n > 1) else [None] * n
        return n, slots

    def describe(self) -> str:
        n, slots = self.plan()
        if n == 1:
            return "local (sequential, in this process)"
        where = f"GPUs {','.join(s for s in slots if s is not None)}" if slots[0] is not None else "CPU"
        return f"local ({n} worker processes, {where})"

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        items = list(items)
        n, slots = self.plan()
        if n == 1 or len(items) <= 1:
            from ..runtime import thread_limit

            with thread_limit(self.threads):  # in this process: for the tasks only, restored after
                return [fn(item) for item in items]
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        for slot in slots:
            queue.put(slot)
        results: list[Any] = [None] * len(items)
        errors: list[tuple[int, BaseException]] = []
        threads = self.threads
        if threads is None and slots[0] is None:  # CPU workers: share the cores instead of oversubscribing
            threads = max(1, (os.cpu_count() or 1) // n)
        with futures.ProcessPoolExecutor(
            max_workers=n, mp_context=context, initializer=_init_worker, initargs=(queue, threads)
        ) as pool:
            pending = {pool.submit(_call, fn, item): index for index, item in enumerate(items)}
            for future in futures.as_completed(pending):
                index = pending[future]
                try:
                    results[index] = future.result()
                except BaseException as exc:  # noqa: BLE001 - reported below, after the others finish
                    errors.append((index, exc))
        if errors:
            index, exc = sorted(errors, key=lambda e: e[0])[0]
            if isinstance(exc, ConceptsError):
                raise ConceptsError(f"{len(errors)} of {len(items)} tasks failed; task {index}: {exc}") from exc
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
            raise ConceptsError(f"{len(errors)} of {len(items)} tasks failed; task {index}: {text}") from exc
        return results


# ----------------------------------------------------------------------------- slurm
def _squeue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """State of each queued array task (``'123_4' -> 'RUNNING'``); None if squeue itself failed."""
    if not job_ids:
        return {}
    ids = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(ids)],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # squeue refuses ids that have left the queue ("Invalid job id specified"): all gone
        return {} if "Invalid job id" in out.stderr else None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


class SlurmExecutor(Executor):
    """Submit the items as one Slurm job array through submitit; wait; return the results.

    Logs, pickled tasks and results live in ``folder`` (which must be visible to the nodes, e.g.
    ``RUN/slurm``). A task is finished when submitit's result file appears; a task that leaves the
    queue without one (killed, out of memory, out of time) counts as failed after ``grace_s``.
    Failures are reported with the path of the task's stderr log.
    """

    name = "slurm"

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        partition: str | None = None,
        gpus_per_task: int = 0,
        cpus_per_task: int = 2,
        mem_gb: float | None = None,
        timeout_min: int = 60,
        array_parallelism: int = 64,
        account: str | None = None,
        qos: str | None = None,
        setup: Sequence[str] = (),
        python: str | None = None,
        job_name: str = "concepts",
        poll_s: float = 2.0,
        grace_s: float = 20.0,
        progress: bool = True,
    ):
        self.folder = Path(folder)
        self.partition = partition
        self.gpus_per_task = gpus_per_task
        self.cpus_per_task = cpus_per_task
        self.mem_gb = mem_gb
        self.timeout_min = timeout_min
        self.array_parallelism = array_parallelism
        self.account = account
        self.qos = qos
        self.setup = list(setup)
        self.python = python
        self.job_name = job_name
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.progress = progress

    def describe(self) -> str:
        parts = [f"partition {self.partition}" if self.partition else "default partition"]
        if self.gpus_per_task:
            parts.append(f"{self.gpus_per_task} GPU(s) per task")
        parts.append(f"{self.cpus_per_task} CPUs per task")
        return "slurm (" + ", ".join(parts) + ")"

    def _executor(self) -> Any:
        try:
            import submitit
        except ImportError:
            raise ConceptsError("the slurm executor needs submitit: pip install submitit") from None
        if shutil.which("sbatch") is None:
            raise ConceptsError("the slurm executor needs Slurm's sbatch on PATH; use --executor local")
        self.folder.mkdir(parents=True, exist_ok=True)
        executor = submitit.SlurmExecutor(folder=str(self.folder / "%j"), python=self.python)
        params: dict[str, Any] = dict(
            job_name=self.job_name,
            time=int(self.timeout_min),
            cpus_per_task=int(self.cpus_per_task),
            array_parallelism=int(self.array_parallelism),
            ntasks_per_node=1,
        )
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_task:
            params["gpus_per_task"] = int(self.gpus_per_task)
        if self.mem_gb:
            params["mem"] = f"{int(round(self.mem_gb * 1024))}M"
        if self.account:
            params["account"] = self.account
        if self.qos:
            params["qos"] = self.qos
        if self.setup:
            params["setup"] = list(self.setup)
        executor.update_parameters(**params)
        return executor

    def submit(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """Submit the job array and return submitit's jobs (one per item) without waiting."""
        executor = self._executor()
        try:
            return list(executor.map_array(fn, list(items)))
        except Exception as exc:  # submitit wraps sbatch's complaint
            message = str(exc).strip().splitlines()
            detail = next((l for l in reversed(message) if "error" in l.lower()), message[-1] if message else "")
            raise ConceptsError(f"sbatch refused the job array: {detail.strip()}") from exc

    def wait(self, jobs: Sequence[Any]) -> list[Any]:
        """Wait for every job, then return their results or raise for the failed ones."""
        gone_since: dict[str, float] = {}
        finished: set[str] = set()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="slurm tasks", unit="task")
        try:
            while len(finished) < len(jobs):
                open_jobs = [j for j in jobs if j.job_id not in finished]
                for job in open_jobs:
                    if job.paths.result_pickle.exists():
                        finished.add(job.job_id)
                        gone_since.pop(job.job_id, None)
                        if bar is not None:
                            bar.update(1)
                if len(finished) == len(jobs):
                    break
                states = _squeue_states([j.job_id for j in jobs if j.job_id not in finished])
                now = time.monotonic()
                if states is not None:
                    for job in jobs:
                        if job.job_id in finished:
                            continue
                        if job.job_id in states and states[job.job_id] not in ("COMPLETED", "FAILED", "CANCELLED",
                                                                               "TIMEOUT", "OUT_OF_MEMORY",
                                                                               "NODE_FAIL", "BOOT_FAIL"):
                            gone_since.pop(job.job_id, None)
                            continue
                        started = gone_since.setdefault(job.job_id, now)
                        if now - started > self.grace_s:
                            finished.add(job.job_id)  # left the queue without a result: failed
                            if bar is not None:
                                bar.update(1)
                time.sleep(self.poll_s)
        finally:
            if bar is not None:
                bar.close()
        return self._collect(jobs)

    def _collect(self, jobs: Sequence[Any]) -> list[Any]:
        results: list[Any] = []
        failures: list[tuple[Any, str]] = []
        for job in jobs:
            if not job.paths.result_pickle.exists():
                failures.append((job, "left the queue without a result (killed, out of time or memory?)"))
                results.append(None)
                continue
            try:
                results.append(job.result())
            except Exception as exc:  # submitit.core.utils.FailedJobError / UncompletedJobError
                lines = [l for l in str(exc).strip().splitlines() if l.strip()]
                last = next((l for l in reversed(lines) if "Error" in l or "error" in l), lines[-1] if lines else "")
                failures.append((job, last.strip()))
                results.append(None)
        if failures:
            job, why = failures[0]
            raise ConceptsError(
                f"{len(failures)} of {len(jobs)} Slurm tasks failed; task {job.job_id}: {why}; "
                f"see {job.paths.stderr}"
            )
        return results

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        items = list(items)
        if not items:
            return []
        jobs = self.submit(fn, items)
        if self.progress:
            ids = sorted({j.job_id.split("_")[0] for j in jobs})
            print(f"submitted Slurm job array {','.join(ids)} ({len(jobs)} tasks); logs in {self.folder}",
                  file=sys.stderr)
        return self.wait(jobs)
