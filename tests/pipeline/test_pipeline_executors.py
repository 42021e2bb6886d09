"""Executors: in-process, worker processes, and a real single-node Slurm (when one is running)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from concepts.errors import ConceptsError
from concepts.pipeline import LocalExecutor, SlurmExecutor
from concepts.pipeline.executors import fail_probe, probe
from concepts.pipeline.tasks import task_batches


def test_task_batches_cover_every_class_once():
    classes = [f"c{i}" for i in range(23)]
    batches = task_batches(classes, 10)
    assert [len(b) for b in batches] == [10, 10, 3]
    assert sum(batches, []) == classes


def test_local_in_process_keeps_order():
    ex = LocalExecutor(workers=1)
    out = ex.map(probe, [3, 1, 2])
    assert [o["square"] for o in out] == [9, 1, 4]
    assert {o["pid"] for o in out} == {os.getpid()}


def test_local_worker_processes():
    ex = LocalExecutor(workers=2, device="cpu")
    assert ex.plan() == (2, [None, None])
    out = ex.map(probe, list(range(5)))
    assert [o["square"] for o in out] == [0, 1, 4, 9, 16]
    assert os.getpid() not in {o["pid"] for o in out}


def test_local_worker_failure_is_reported():
    with pytest.raises(ConceptsError, match="2 of 2 tasks failed; task 0: RuntimeError: probe failure for 5"):
        LocalExecutor(workers=2, device="cpu").map(fail_probe, [5, 6])


def test_auto_workers_one_per_gpu(monkeypatch):
    import concepts.pipeline.executors as ex

    monkeypatch.setattr(ex, "visible_gpus", lambda: ["2", "5", "7"])
    assert LocalExecutor("auto").plan() == (3, ["2", "5", "7"])
    assert LocalExecutor(2).plan() == (2, ["2", "5"])
    assert LocalExecutor("auto", device="cpu").plan()[0] == 1
    monkeypatch.setattr(ex, "visible_gpus", lambda: ["0"])
    assert LocalExecutor("auto").plan() == (1, [None])


def slurm_ready() -> str | None:
    """None when a Slurm node is idle, else why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed (no sinfo/sbatch); run `bash .ci/slurm-up.sh` as root"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s in ("idle", "mix") for s in states):
        return f"no idle Slurm node (sinfo: {out.stdout.strip() or out.stderr.strip()}); run `bash .ci/slurm-up.sh`"
    return None


@pytest.mark.slurm
def test_slurm_job_array_runs_tasks(tmp_path):
    reason = slurm_ready()
    if reason:
        pytest.skip(reason)
    ex = SlurmExecutor(tmp_path / "slurm", cpus_per_task=1, timeout_min=5, progress=False, poll_s=0.5)
    out = ex.map(probe, [1, 2, 3])
    assert [o["square"] for o in out] == [1, 4, 9]
    assert sorted(o["slurm_array_task_id"] for o in out) == ["0", "1", "2"]
    assert all(o["slurm_job_id"] for o in out)


@pytest.mark.slurm
def test_slurm_failure_names_stderr_log(tmp_path):
    reason = slurm_ready()
    if reason:
        pytest.skip(reason)
    ex = SlurmExecutor(tmp_path / "slurm", cpus_per_task=1, timeout_min=5, progress=False, poll_s=0.5)
    with pytest.raises(ConceptsError) as info:
        ex.map(fail_probe, [4])
    message = str(info.value)
    assert "probe failure for 4" in message and "log.err" in message
    path = message.rsplit("see ", 1)[1]
    assert os.path.exists(path)
