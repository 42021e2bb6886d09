"""RowStream: every row exactly once per epoch, seeded order, bounded memory, clear errors on bad rows."""
from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
import torch

from concepts.errors import ConceptsError
from concepts.extract import ActivationCache
from concepts.factorize.stream import ArraySource, RowStream, source_chunk_rows
from fake_artefacts import write_patches_activations


def _identity_maps(n_images, n_pos, d, source_id, seed=0):
    """Maps whose channel 0 is the row index and channel 1 the source id (exact in float32)."""
    rng = np.random.default_rng(seed)
    maps = rng.random((n_images, n_pos, d), dtype=np.float32)
    maps[:, :, 0] = np.arange(n_images * n_pos, dtype=np.float32).reshape(n_images, n_pos)
    maps[:, :, 1] = source_id
    return maps


@pytest.fixture
def two_caches(tmp_path):
    paths = [write_patches_activations(tmp_path / "run", f"c{i}", _identity_maps(n, 9, 8, i, seed=i))
             for i, n in enumerate((37, 53))]
    caches = [ActivationCache(p) for p in paths]
    yield caches
    for c in caches:
        c.close()


def _ids(batches):
    rows = np.concatenate([b.numpy() for b in batches])
    return rows, list(zip(rows[:, 1].astype(int).tolist(), rows[:, 0].astype(int).tolist()))


def test_an_epoch_yields_every_row_of_every_source_exactly_once(two_caches):
    stream = RowStream(two_caches, batch_size=10, buffer_rows=60, block_rows=18, seed=3)
    assert stream.n_rows == (37 + 53) * 9 and stream.n_features == 8
    batches = list(stream.epoch(0))
    assert all(b.dtype == torch.float32 and b.shape[1] == 8 for b in batches)
    assert [len(b) for b in batches[:-1]] == [10] * (len(batches) - 1) and len(batches) == stream.steps_per_epoch()
    rows, ids = _ids(batches)
    expected = [(s, r) for s, n in ((0, 37 * 9), (1, 53 * 9)) for r in range(n)]
    assert sorted(ids) == expected  # each (source, row) once: nothing lost, nothing repeated
    # the rows are the cached rows (not only their identities)
    by_id = {k: v for k, v in zip(ids, rows)}
    np.testing.assert_array_equal(by_id[(1, 100)], two_caches[1].read_rows(100, 101)[0])
    # and they are shuffled: not in file order, and sources are mixed within the epoch
    assert ids != sorted(ids)
    first_half = {s for s, _ in ids[: len(ids) // 2]}
    assert first_half == {0, 1}


def test_blocks_are_chunk_aligned_and_bounded_by_the_buffer(two_caches):
    stream = RowStream(two_caches, batch_size=10, buffer_rows=60, block_rows=20)
    assert source_chunk_rows(two_caches[0]) == 9  # one image (9 positions) per row of the maps dataset
    for i, start, stop in stream._blocks:
        assert start % 9 == 0 and (stop - start) % 9 == 0 or stop == two_caches[i].n_rows
        assert stop - start == 18 or stop == two_caches[i].n_rows  # 20 rounded to two chunks


def test_epochs_are_deterministic_for_a_seed_and_differ_otherwise(two_caches):
    a = RowStream(two_caches, batch_size=16, buffer_rows=100, seed=5)
    b = RowStream(two_caches, batch_size=16, buffer_rows=100, seed=5)
    c = RowStream(two_caches, batch_size=16, buffer_rows=100, seed=6)
    ids_a0 = _ids(a.epoch(0))[1]
    assert ids_a0 == _ids(b.epoch(0))[1] == _ids(a.epoch(0))[1]
    assert ids_a0 != _ids(a.epoch(1))[1]
    assert ids_a0 != _ids(c.epoch(0))[1]
    assert sorted(ids_a0) == sorted(_ids(c.epoch(0))[1])


def test_array_sources_paths_and_drop_last(two_caches, tmp_path):
    arr = np.arange(50 * 8, dtype=np.float32).reshape(50, 8)
    stream = RowStream([ArraySource(arr), two_caches[0].path], batch_size=8, buffer_rows=40, drop_last=True)
    batches = list(stream.epoch(2))
    assert all(len(b) == 8 for b in batches) and len(batches) == (50 + 37 * 9) // 8
    with pytest.raises(ConceptsError, match="different numbers of channels"):
        RowStream([arr, np.zeros((3, 5), np.float32)])


def test_stopping_early_stops_the_reader_thread(two_caches):
    before = threading.active_count()
    stream = RowStream(two_caches, batch_size=4, buffer_rows=40, prefetch=1)
    for i, _ in enumerate(stream.epoch(0)):
        if i == 2:
            break
    assert threading.active_count() == before


def test_nan_or_inf_rows_are_a_clear_error(tmp_path):
    maps = _identity_maps(20, 4, 6, 0)
    maps[13, 2, 4] = np.nan
    path = write_patches_activations(tmp_path / "run", "bad", maps)
    with ActivationCache(path) as cache:
        stream = RowStream(cache, batch_size=8, buffer_rows=32)
        with pytest.raises(ConceptsError, match=r"bad\.h5: row 54 contains NaN or inf"):
            for _ in stream.epoch(0):
                pass
    arr = np.ones((30, 3), np.float32)
    arr[7, 1] = np.inf
    with pytest.raises(ConceptsError, match="row 7 contains NaN or inf"):
        list(RowStream(ArraySource(arr, name="mine"), batch_size=4).epoch(0))


def test_sample_reads_distinct_rows(two_caches):
    stream = RowStream(two_caches, batch_size=10, buffer_rows=60)
    sample = stream.sample(100, seed=1)
    ids = set(zip(sample[:, 1].astype(int).tolist(), sample[:, 0].astype(int).tolist()))
    assert sample.shape == (100, 8) and len(ids) == 100
    np.testing.assert_array_equal(sample, stream.sample(100, seed=1))
    assert len(stream.sample(10 ** 6)) == stream.n_rows


def _peak_traced_bytes(stream) -> tuple[int, int]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    n = 0
    for batch in stream.epoch(0):
        n += len(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, n


def test_peak_memory_is_bounded_by_the_buffer_not_the_cache(tmp_path):
    d, n_pos, buffer_rows, batch = 64, 16, 4096, 256
    row_bytes = 4 * d
    peaks = {}
    for scale in (1, 10):
        n_images = scale * buffer_rows // n_pos
        path = write_patches_activations(tmp_path / f"run{scale}", "big", _identity_maps(n_images, n_pos, d, 0))
        with ActivationCache(path) as cache:
            stream = RowStream(cache, batch_size=batch, buffer_rows=buffer_rows, prefetch=2)
            peak, n = _peak_traced_bytes(stream)
        assert n == scale * buffer_rows
        peaks[scale] = peak
    cache_bytes_10x = 10 * buffer_rows * row_bytes
    # the buffer, one block, a carried remainder and a few batches; not the cache (10x the buffer)
    bound = (buffer_rows + buffer_rows // 4 + 8 * batch) * row_bytes * 1.5
    assert peaks[10] < bound < cache_bytes_10x / 3
    assert peaks[10] < 1.3 * peaks[1]  # flat: ten times the rows, about the same peak


_RSS_SCRIPT = r"""
import sys
from concepts.extract import ActivationCache
from concepts.factorize.stream import RowStream
from concepts.factorize.minibatch_nmf import MiniBatchNMF
cache = ActivationCache(sys.argv[1])
stream = RowStream(cache, batch_size=1024, buffer_rows=int(sys.argv[2]), seed=0)
total = 0.0
for batch in stream.epoch(0):
    total += float(batch[:, 0].sum())
model = MiniBatchNMF(4, batch_size=1024, max_epochs=1, init_rows=4096, eval_rows=4096, random_state=0).fit(stream)
# VmHWM: the peak resident set of this process image (ru_maxrss would carry the parent's over exec)
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(hwm, model.n_iter_)
"""


@pytest.mark.slow
def test_peak_rss_of_a_streamed_fit_stays_flat_on_a_cache_ten_times_the_buffer(tmp_path):
    """A real process (RSS, not only traced allocations) streams an epoch and fits mini-batch NMF on caches of 1x
    and 10x the buffer: the 10x cache (40 MB of float16 rows) does not raise the peak resident memory."""
    import os
    import subprocess
    import sys

    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs Linux's /proc/self/status (VmHWM)")

    d, n_pos, buffer_rows = 128, 16, 16_384
    rss = {}
    for scale in (1, 10):
        n_images = scale * buffer_rows // n_pos
        maps = np.random.default_rng(scale).random((n_images, n_pos, d), dtype=np.float32).astype(np.float16)
        path = write_patches_activations(tmp_path / f"run{scale}", "big", maps)
        del maps
        env = dict(os.environ, OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(path), str(buffer_rows)], capture_output=True,
                             text=True, check=True, env=env)
        kb, steps = map(int, out.stdout.split())
        assert steps == -(-scale * buffer_rows // 1024)
        rss[scale] = kb / 1024
    float32_mb_10x = 10 * buffer_rows * d * 4 / 2 ** 20  # 80 MB as float32 (40 MB of float16 on disk)
    # what grows is O(rows) metadata (the cache's per-row provenance arrays, the sample's permutation) and HDF5's
    # chunk cache: 20-30 MB measured under load; reading the cache whole would add at least the 80 MB of float32 rows
    assert rss[10] - rss[1] < 0.5 * float32_mb_10x, rss
