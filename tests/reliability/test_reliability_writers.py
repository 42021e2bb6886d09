"""One writer per class file, and clean failures when the disk is full (issue 17)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from concepts.schema import open_run, stage_path
from concepts.schema.locks import artefact_lock

from conftest import CLASSES

ROOT = Path(__file__).resolve().parents[2]


def _extract(images, out, *extra):
    return [sys.executable, "-m", "concepts", "extract", str(images), "--out", str(out), "--mode", "patches",
            "--workers", "0", "--threads", "1", "-q", *extra]


def test_two_writers_on_one_run_folder_take_turns(images, tmp_path):
    """Two `extract` processes at once on the same run: no crash, each class written once, files as a lone run's."""
    run = tmp_path / "run"
    procs = [subprocess.Popen(_extract(images, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    # every class was written by exactly one of them; the other waited for it, then found it done
    written = [int(re.search(r"extract: (\d+) written", err).group(1)) for _, err in outs]
    assert sum(written) == 2
    assert not list((run / "activations").glob("*.tmp")) and not list((run / "activations").glob("*.lock"))
    lone = tmp_path / "lone"
    subprocess.run(_extract(images, lone), check=True, capture_output=True)
    for class_id in CLASSES:
        with open_run(run).activations(class_id) as a, open_run(lone).activations(class_id) as b:
            np.testing.assert_array_equal(a.maps(), b.maps())


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    path = tmp_path / "activations" / "c.h5"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from concepts.schema.locks import artefact_lock
        with artefact_lock({str(path)!r}):
            print("held", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    lock = path.with_name(path.name + ".lock")
    assert f'"pid": {holder.pid}' in lock.read_text()
    said = []
    waiter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from concepts.schema.locks import artefact_lock
        with artefact_lock({str(path)!r}, say=lambda m: print(m, flush=True)):
            print("mine", flush=True)
    """)], stdout=subprocess.PIPE, text=True)
    said.append(waiter.stdout.readline().strip())
    assert said[0].startswith(f"waiting for {path}: it is being written by pid {holder.pid}")
    holder.send_signal(signal.SIGKILL)  # the kernel releases a dead holder's lock
    holder.wait()
    start = time.time()
    assert waiter.stdout.readline().strip() == "mine" and time.time() - start < 10
    waiter.wait(timeout=30)
    with artefact_lock(path):  # and it is free again
        pass


def _tmpfs(where: Path, size: str) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    return where


def test_a_full_disk_is_one_line_and_keeps_earlier_files(images, tmp_path):
    disk = _tmpfs(tmp_path / "disk", "400k")
    try:
        run = disk / "run"
        done = subprocess.run(_extract(images, run, "--classes", CLASSES[0], "--max-images", "1"),
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        first = stage_path(run, "extract", CLASSES[0]).read_bytes()
        done = subprocess.run(_extract(images, run), capture_output=True, text=True)  # 3 photos do not fit
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("concepts: error: no space left on device") and "Traceback" not in done.stderr
        assert stage_path(run, "extract", CLASSES[0]).read_bytes() == first  # the earlier file is intact
        assert not list((run / "activations").glob("*.tmp"))
        # a disk that fills up while writing (after the free-space check): the same line, no crash (HDF5
        # segfaults when it frees objects of a file whose writes failed, unless the file is emptied first)
        script = textwrap.dedent(f"""
            import concepts.schema.activations as a
            a.check_free_space = lambda *args: None
            from concepts.cli import main
            raise SystemExit(main(["extract", {str(images)!r}, "--out", {str(run)!r}, "--mode", "patches",
                                   "--workers", "0", "-q", "--classes", {CLASSES[1]!r}]))
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert done.returncode == 2, (done.returncode, done.stderr[-500:])
        assert "no space left on device while writing" in done.stderr and "freed the partial file" in done.stderr
        assert not list((run / "activations").glob("*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
