"""Runtime set-up: device choice, thread counts and the CPU allocator tuning."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from concepts.errors import ConceptsError
from concepts.runtime import autocast_dtype, cpu_has_native_bf16, pick_device

# A forward pass in miniature: three large activations alive at once, then freed, batch after batch. Prints the
# page faults of the last four batches (after six to settle).
_FAULTS = """
import json, resource, sys, torch
from concepts.runtime import tune_cpu_allocator
tuned = tune_cpu_allocator() if sys.argv[1] == "tune" else False
def batch():
    alive = [torch.ones(n << 20) for n in (16, 24, 12)]  # 64, 96 and 48 MiB of float32
    del alive
for _ in range(6):
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    batch()
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str, env_extra: dict[str, str] | None = None) -> dict:
    env = dict(os.environ, **(env_extra or {}))
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_tuned_allocator_reuses_freed_tensors_instead_of_faulting_them_in_again():
    plain = _faults("plain")
    tuned = _faults("tune")
    assert tuned["tuned"] is True
    pages = 4 * (208 << 20) // 4096  # what four batches of fresh tensors cost in 4 KiB pages
    assert plain["faults"] > 0.5 * pages  # glibc mmaps and unmaps every large block
    assert tuned["faults"] < 0.05 * pages  # kept in the heap and reused


def test_allocator_tuning_can_be_switched_off():
    assert _faults("tune", {"CONCEPTS_MALLOC_TUNING": "0"})["tuned"] is False


def test_pick_device_and_precision_names():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConceptsError, match="no CUDA device"):
            pick_device("cuda")
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16") is torch.bfloat16
    with pytest.raises(ConceptsError, match="unknown precision"):
        autocast_dtype("int4")


@pytest.mark.parametrize("flags,native", [
    ("flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni", True),
    ("flags\t\t: fpu sse avx2 avx512f avx512_vnni", False),  # AVX-512 without its bf16 extension
    ("flags\t\t: fpu sse avx2 amx_bf16 amx_tile", True),
    ("Features\t: fp asimd bf16 i8mm", True),  # Arm
])
def test_native_bf16_is_read_from_the_cpu_flags(flags, native, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{flags}\n\nprocessor\t: 1\n{flags}\n")
    assert cpu_has_native_bf16(str(cpuinfo)) is native
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is None


def test_small_operations_run_on_one_thread_and_the_count_is_restored():
    import numpy as np

    from concepts.factorize import make_estimator
    from concepts.factorize.nmf import NMF
    from concepts.runtime import SMALL_WORK, threads_for, work_threads

    assert threads_for(SMALL_WORK / 2, threads=4) == 1 and threads_for(SMALL_WORK * 2, threads=4) == 4
    seen = []

    class Recording(NMF):
        def _fit(self, X, gen):
            seen.append(torch.get_num_threads())
            return super()._fit(X, gen)

    before = torch.get_num_threads()
    with work_threads(SMALL_WORK * 2):
        if torch.get_num_threads() < 2:
            pytest.skip("a single-core machine: nothing to restrict")
        A = np.abs(np.random.default_rng(0).normal(size=(60, 8))).astype(np.float32)
        Recording(3, max_iter=5, random_state=0, device="cpu").fit(A)  # 60 x 8 x 3: small
        assert seen == [1] and torch.get_num_threads() >= 2
    assert torch.get_num_threads() == before
    make_estimator("nmf", 3, random_state=0, device="cpu").fit(A).transform(A)
    assert torch.get_num_threads() == before


def test_the_cli_asks_openmp_for_a_passive_wait_before_torch_loads():
    code = ("import sys, concepts.cli as c; from concepts.runtime import passive_openmp_wait; "
            "print(passive_openmp_wait(), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.split() == ["True", "False"], done.stderr[-2000:]
    late = "import torch; from concepts.runtime import passive_openmp_wait; print(passive_openmp_wait())"
    done = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.split() == ["False"]  # too late once torch's OpenMP runtime is loaded: nothing set
    user = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert user.stdout.split() == ["False", "False"]  # the user's choice is kept
