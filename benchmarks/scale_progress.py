#!/usr/bin/env python3
"""Progress of a `concepts run` that has not finished (e.g. `benchmarks/scale.py` stopped before its end): classes
finished (their importance files) against the time since the run started, per 100 classes, and the peak resident
memory (VmHWM, Linux) of the given live processes.

    python benchmarks/scale_progress.py RUN START_FILE [PID ...]

START_FILE: a file written just before the run started (scale.py's labels-N.csv); its mtime is the start.
"""
from __future__ import annotations

import sys
from pathlib import Path


def peak_rss_mib(pid: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    run, start = Path(sys.argv[1]), Path(sys.argv[2]).stat().st_mtime
    times = sorted(p.stat().st_mtime - start for p in (run / "importance").glob("*.h5"))
    if not times:
        raise SystemExit(f"no finished class in {run}")
    n = len(times)
    print(f"{n} classes finished after {times[-1]:.0f} s ({times[-1] / n:.2f} s/class)")
    for k in range(100, n + 1, 100):
        before = times[k - 101] if k > 100 else 0.0
        print(f"  {k} classes at {times[k - 1]:.0f} s; classes {k - 99}-{k}: {(times[k - 1] - before) / 100:.2f} s/class")
    for pid in sys.argv[3:]:
        rss = peak_rss_mib(pid)
        if rss is not None:
            print(f"  pid {pid}: peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
