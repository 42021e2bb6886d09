"""What the benchmark scripts share: where the shared data lives, timing helpers, the machine's load."""
from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the shared folder beside the project (/work/shared for /work/main, found from a worktree /work/wt/NAME too)
SHARED = next((p / "shared" for p in ROOT.parents if (p / "shared" / "data").is_dir()), ROOT.parent / "shared")
DATA = SHARED / "data" / "imagenette"
VAL50 = DATA / "val50"
REFERENCE = SHARED / "bench" / "craft_reference.py"


def load() -> str:
    """The machine's load averages and core count, to print beside timings taken on a shared machine."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


def span(values, fmt: str = ".3g") -> str:
    """'a-b' (min-max) of repeated measurements, or the single value (also when they agree within 0.5%)."""
    values = [float(v) for v in values]
    if len(values) == 1 or max(values) - min(values) < 5e-3 * max(abs(min(values)), 1e-9):
        return f"{values[0]:{fmt}}" if len(values) == 1 else f"{min(values):{fmt}}"
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


class Clock:
    """``with Clock() as c: ...; c.seconds``; synchronises CUDA when it is in use."""

    def __enter__(self):
        _sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        _sync()
        self.seconds = time.perf_counter() - self.start


def _sync() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
