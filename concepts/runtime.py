"""Device and thread selection shared by every stage."""
from __future__ import annotations

import os

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` if given, else CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import ConceptsError

        raise ConceptsError("device 'cuda' was requested but no CUDA device is available; use --device cpu")
    return device


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: leave torch's default). Returns the count in force."""
    if threads is not None and threads > 0:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def default_workers(device: torch.device | str | None = None) -> int:
    """DataLoader decoding workers.

    On CUDA the model leaves the cores free: use all but one for decoding (at most 8). On the CPU the
    model's threads already occupy the cores, and a decoding process beside them only competes (measured
    on 2 cores: 0.68 of the bare forward throughput with one worker, 0.94 with decoding in the main
    process), so workers get only the cores that torch's threads leave idle.
    """
    cores = os.cpu_count() or 1
    if device is not None and torch.device(device).type == "cuda":
        return max(0, min(8, cores - 1))
    return max(0, min(4, cores - torch.get_num_threads()))


def autocast_dtype(precision: str | None) -> torch.dtype | None:
    """Map 'fp32'/'bf16'/'fp16' to the autocast dtype (None means full precision)."""
    if precision in (None, "fp32", "float32"):
        return None
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if precision not in table:
        from .errors import ConceptsError

        raise ConceptsError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16")
    return table[precision]
