"""Device, thread and CPU-allocator set-up shared by every stage.

Library calls never change process-wide state for good: :func:`thread_limit` sets torch's thread count only for
the duration of a block. What a process may want once, for good, is applied by :func:`configure_process`: the CLI
calls it at start-up; Python users call it themselves when they want it (``concepts.configure_process()``).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch

_ALLOCATOR_TUNED: bool | None = None
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc <malloc.h>
KEEP_FREED_BYTES = 1 << 30


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` if given, else CUDA when available, else CPU."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import ConceptsError

        raise ConceptsError("device 'cuda' was requested but no CUDA device is available; use --device cpu")
    return device


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` torch intra-op threads (None: leave them) and restore the count after."""
    import torch

    before = torch.get_num_threads()
    if threads is not None and threads > 0 and threads != before:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


#: multiply-adds of one operation below which it runs on one thread (see :func:`threads_for`)
SMALL_WORK = 1e9


def threads_for(work: float, threads: int | None = None) -> int:
    """The torch threads for an operation of about ``work`` multiply-adds: 1 when it is small, else ``threads``
    (default: the current count).

    Small operations (a class's factorisation, a transform, the factored or closed-form importances) are loops of
    kernels of micro- to milliseconds. With two or more OpenMP threads, each kernel ends at a barrier; when
    another process holds a core, the thread waiting there spins on it (libgomp's default wait policy) or waits
    for the descheduled one, and the loop slows down 3-80x (an 800 x 1280 NMF, r = 10, took 3 s on 1 thread and
    32-73 s on 2 beside other jobs on 2 cores; 4.5 s on 2 with ``OMP_WAIT_POLICY=PASSIVE``). On one thread there is
    no barrier, and at these sizes a second thread gained nothing even on an idle machine (0.37 s vs 0.40 s).
    ``SMALL_WORK`` (1e9) covers every class of CRAFT crops and of feature-map positions up to ~80 000 rows of
    1280 channels at r = 10; larger problems and the model's forward passes keep ``threads``.
    ``CONCEPTS_SMALL_WORK`` overrides the threshold (0 turns the policy off).
    """
    import torch

    current = torch.get_num_threads() if threads is None else int(threads)
    return 1 if work < small_work() else max(1, current)


def small_work() -> float:
    """:data:`SMALL_WORK`, or the value of ``CONCEPTS_SMALL_WORK`` (multiply-adds; 0: every operation keeps the
    caller's threads, as before this policy)."""
    raw = os.environ.get("CONCEPTS_SMALL_WORK", "").strip()
    try:
        return float(raw) if raw else SMALL_WORK
    except ValueError:
        return SMALL_WORK


@contextlib.contextmanager
def work_threads(work: float) -> Iterator[int]:
    """Run the block with :func:`threads_for` ``(work)`` threads (scoped: the counts are restored after).

    When that is one thread, NumPy's BLAS (OpenBLAS, through threadpoolctl) is limited to one thread too: its idle
    threads spin like OpenMP's (a 196 x 10 by 10 x 1280 product took 9.9 ms with its 2 threads beside other jobs on
    2 cores, 0.39 ms with 1). Entering costs ~1 ms (threadpoolctl lists the loaded libraries): use it around a
    class's or a fit's work, not around one product."""
    threads = threads_for(work)
    with thread_limit(threads) as now:
        if threads == 1:
            with _blas_threads(1):
                yield now
        else:
            yield now


@contextlib.contextmanager
def _blas_threads(limit: int) -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        yield
        return
    with threadpool_limits(limits=limit, user_api="blas"):
        yield


OPENMP_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def passive_openmp_wait() -> bool:
    """Ask OpenMP to put idle threads to sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), for the process
    and the workers it starts. For the command line entry point, not for library code: it sets an environment
    variable, and it only takes effect when torch (its OpenMP runtime) is not loaded yet, so the CLI calls it
    before anything imports torch. Left alone when the user set any of ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or
    ``KMP_BLOCKTIME``. Returns whether the policy is passive for this process's OpenMP runtime."""
    if any(name in os.environ for name in OPENMP_WAIT_VARIABLES):
        return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE" and "torch" not in sys.modules
    if "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def default_workers(device: torch.device | str | None = None) -> int:
    """DataLoader decoding workers.

    On CUDA the model leaves the cores free: use all but one for decoding (at most 8). On the CPU the
    model's threads already occupy the cores, and a decoding process beside them only competes (measured
    on 2 cores: 0.68 of the bare forward throughput with one worker, 0.94 with decoding in the main
    process), so workers get only the cores that torch's threads leave idle.
    """
    import torch

    cores = os.cpu_count() or 1
    if device is not None and torch.device(device).type == "cuda":
        return max(0, min(8, cores - 1))
    return max(0, min(4, cores - torch.get_num_threads()))


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm); None when
    it cannot be told (no /proc/cpuinfo). Without it oneDNN emulates bf16 and the forward pass is slower than fp32."""
    try:
        with open(cpuinfo) as handle:
            text = handle.read()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def autocast_dtype(precision: str | None) -> torch.dtype | None:
    """Map 'fp32'/'bf16'/'fp16' to the autocast dtype (None means full precision)."""
    import torch

    if precision in (None, "fp32", "float32"):
        return None
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if precision not in table:
        from .errors import ConceptsError

        raise ConceptsError(f"unknown precision {precision!r}; choose fp32, bf16 or fp16")
    return table[precision]


def allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` changed glibc's allocator in this process."""
    return bool(_ALLOCATOR_TUNED)


def configure_process(*, allocator: bool = True, threads: int | None = None) -> dict[str, object]:
    """What the CLI applies once at start-up, for good (a library call never does):

    * ``allocator``: :func:`tune_cpu_allocator` (glibc keeps large freed blocks: ~2x faster CPU forward passes);
    * ``threads``: torch's intra-op thread count for the whole process.

    Returns what is in force. Python users who want the same speed call it once at the top of their script.
    """
    tuned = tune_cpu_allocator() if allocator else allocator_tuned()
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return {"allocator_tuned": tuned, "threads": threads}


def tune_cpu_allocator() -> bool:
    """Stop glibc from handing every large tensor back to the kernel (once per process; Linux/glibc only).

    A CPU forward pass allocates and frees activation tensors of tens to hundreds of MB per batch. glibc
    serves each of them with a fresh ``mmap`` and returns it with ``munmap``, so every batch page-faults its
    whole working set again: on 2 cores that kernel time was as large as the arithmetic (EfficientNet-Lite0,
    batch 64, fp32: 48 img/s, half of the CPU time in the kernel). With large blocks taken from the heap and up
    to 1 GiB of freed memory kept for reuse, the same forward ran at 69 img/s, and at batch 16 with no kernel
    time left (``benchmarks/forward.py`` prints the "+malloc" row). Peak memory stays about the same; the
    process keeps its peak working set (and at most that reserve on top) until it exits.
    Set ``CONCEPTS_MALLOC_TUNING=0`` to leave the allocator alone. Returns whether the tuning is in force.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    _ALLOCATOR_TUNED = False
    if os.environ.get("CONCEPTS_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _ALLOCATOR_TUNED = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    return _ALLOCATOR_TUNED


HF_DEFAULT_ENDPOINT = "https://huggingface.co"


def _hub_endpoint() -> str:
    hub = sys.modules.get("huggingface_hub.constants")  # once imported, it no longer reads HF_ENDPOINT
    return getattr(hub, "ENDPOINT", None) or os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT


def hub_reachable(endpoint: str | None = None, timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (where timm's pretrained weights live) accepts a TCP connection."""
    from urllib.parse import urlparse
    import socket

    url = urlparse(endpoint or _hub_endpoint())
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def hub_offline_if_unreachable(timeout: float = 3.0) -> bool:
    """Put huggingface_hub in offline mode when its endpoint cannot be reached. Returns whether it is offline.

    For the command line entry point, not for library code: it changes the process. Offline, huggingface_hub
    retries each request five times with back-off before it gives up (measured here: 46 s until
    ``timm.create_model(name, pretrained=True)`` raised ``LocalEntryNotFoundError``); in offline mode it answers
    from its cache at once (0.1 s), and a model that is not cached fails with the same error.

    The probe is one TCP connection to ``HF_ENDPOINT`` (default huggingface.co:443), skipped when
    ``HF_HUB_OFFLINE`` is already set to a true value. When the hub is unreachable the function sets the
    environment variable ``HF_HUB_OFFLINE=1``, which huggingface_hub reads when it is first imported, and, if it
    was imported already, its ``constants.HF_HUB_OFFLINE`` as well, so the order of imports does not matter.
    """
    hub = sys.modules.get("huggingface_hub.constants")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE") or (
        hub is not None and getattr(hub, "HF_HUB_OFFLINE", False)
    ):
        return True
    if hub_reachable(timeout=timeout):
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    return True
