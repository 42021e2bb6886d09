"""One writer per artefact: a lock per class file (and per run-level folder such as ``atlas/``).

``with artefact_lock(path):`` holds ``<path>.lock`` with an exclusive ``flock``; the file says who holds it (pid,
host, since when) so that a second writer can say whom it waits for. The kernel releases the lock when its holder
dies, so a lock left by a killed process is simply taken over. Locks are per file: Slurm array tasks and worker
processes writing different classes of one run go on in parallel; two writers of the same class take turns (the
second then finds the class done and skips it).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} (since {info.get('since', '?')})"


@contextlib.contextmanager
def artefact_lock(path: str | os.PathLike, *, say: Callable[[str], None] | None = None,
                  poll_s: float = 0.2) -> Iterator[Path]:
    """Hold the lock of ``path`` for the block; wait (saying so once) while another live process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    told = False
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not told and say is not None:
                say(f"waiting for {path}: it is being written by {_holder(lock)}")
                told = True
            time.sleep(poll_s)
            continue
        try:  # the file we locked must still be the lock file (its last holder may have removed it meanwhile)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": _dt.datetime.now().isoformat(timespec="seconds")}).encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)  # closing releases the lock
