"""Mini-batch NMF and Semi-NMF: batch NMF's error from batches, streams, determinism, save/reload, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from concepts.errors import ConceptsError
from concepts.extract import ActivationCache
from concepts.factorize import NMF, SemiNMF
from concepts.factorize import _solvers as S
from concepts.factorize.metrics import match_atoms
from concepts.factorize.minibatch_nmf import MiniBatchNMF, MiniBatchSemiNMF
from concepts.factorize.stream import RowStream
from fake_artefacts import write_patches_activations


@pytest.fixture(scope="module")
def nonneg():
    rng = np.random.default_rng(0)
    W0 = rng.random((6, 40))
    A = (rng.random((6000, 6)) ** 2 @ W0 + 0.15 * rng.random((6000, 40))).astype(np.float32)
    return A, W0


@pytest.fixture(scope="module")
def signed():
    rng = np.random.default_rng(1)
    W0 = rng.standard_normal((6, 40))
    U0 = rng.random((6000, 6)) * (rng.random((6000, 6)) < 0.5)
    return (U0 @ W0 + 0.1 * rng.standard_normal((6000, 40))).astype(np.float32), W0


def test_minibatch_nmf_reaches_batch_nmf_error(nonneg):
    A, W0 = nonneg
    batch = NMF(6, random_state=0).fit(A)
    model = MiniBatchNMF(6, batch_size=256, max_epochs=10, tol=0, random_state=0).fit(A)
    assert model.reconstruction_err_ <= 1.03 * batch.reconstruction_err_
    assert (model.components_ >= 0).all()
    U = model.transform(A)
    assert (U >= 0).all() and U.shape == (6000, 6)
    np.testing.assert_allclose(np.linalg.norm(A - model.inverse_transform(U)) / np.linalg.norm(A),
                               model.reconstruction_err_, rtol=1e-3)  # measured on all rows (< eval_rows)
    # transform is the exact NNLS with the bank fixed
    ref = S.nnls_transform(torch.from_numpy(A[:500]), torch.from_numpy(model.components_), 65536, 200, 1e-5)
    np.testing.assert_allclose(U[:500], ref.numpy(), atol=1e-5)
    assert match_atoms(model.components_, W0)[0] > 0.95
    assert model.n_epochs_ == 10 and model.n_iter_ == 10 * 24 and len(model.epoch_errors_) == 10
    assert model.epoch_errors_[-1] < model.epoch_errors_[0]


def test_minibatch_semi_nmf_reaches_batch_semi_nmf_error(signed):
    A, W0 = signed
    batch = SemiNMF(6, random_state=0).fit(A)
    model = MiniBatchSemiNMF(6, batch_size=256, max_epochs=5, tol=0, random_state=0).fit(A)
    assert model.reconstruction_err_ <= 1.03 * batch.reconstruction_err_
    assert (model.components_ < 0).any() and (model.transform(A[:100]) >= 0).all()
    assert match_atoms(model.components_, W0)[0] > 0.9


def test_seeded_and_stops_on_tol(nonneg):
    A, _ = nonneg
    a = MiniBatchNMF(5, batch_size=512, max_epochs=3, random_state=2).fit(A)
    b = MiniBatchNMF(5, batch_size=512, max_epochs=3, random_state=2).fit(A)
    c = MiniBatchNMF(5, batch_size=512, max_epochs=3, random_state=3).fit(A)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert not np.array_equal(a.components_, c.components_)
    loose = MiniBatchNMF(5, batch_size=512, max_epochs=50, tol=0.05, random_state=2).fit(A)
    assert loose.converged_ and loose.n_epochs_ < 50
    steps = MiniBatchNMF(5, batch_size=512, n_steps=7, random_state=2).fit(A)
    assert steps.n_iter_ == 7


def test_fit_from_a_stream_and_partial_fit(tmp_path, nonneg):
    A, _ = nonneg
    paths = [write_patches_activations(tmp_path / "run", f"c{i}", A[i * 3000:(i + 1) * 3000].reshape(300, 10, 40))
             for i in range(2)]
    caches = [ActivationCache(p) for p in paths]
    try:
        stream = RowStream(caches, batch_size=256, buffer_rows=1500, seed=0)
        model = MiniBatchNMF(6, batch_size=256, max_epochs=10, tol=0, random_state=0).fit(stream)
        batch = NMF(6, random_state=0).fit(A)
        assert model.reconstruction_err_ <= 1.05 * batch.reconstruction_err_
        online = MiniBatchNMF(6, batch_size=256, random_state=0)
        errors = []
        for _ in range(3):
            online.partial_fit(A[:3000])
            errors.append(online.reconstruction_err_)
        assert errors[-1] < errors[0] and online.n_iter_ == 3 * 12
        # a stream with negative rows is refused for NMF
        neg = RowStream(ArrayLike(A - 1.0), batch_size=256)
        with pytest.raises(ConceptsError, match="Negative"):
            MiniBatchNMF(3, max_epochs=1).fit(neg)
    finally:
        for c in caches:
            c.close()


class ArrayLike:
    """A minimal row source (not an ndarray)."""

    def __init__(self, array):
        self.array = array
        self.n_rows, self.n_channels = array.shape

    def read_rows(self, start, stop, dtype=np.float32):
        return self.array[start:stop].astype(dtype)


def test_save_reload_and_bad_input(nonneg, signed):
    A, _ = nonneg
    model = MiniBatchNMF(4, batch_size=512, max_epochs=2, random_state=0).fit(A)
    assert model.state_arrays() == {}
    fresh = MiniBatchNMF(**model.get_params()).load_state(model.components_.copy(), {}, {"n_iter_": 3})
    np.testing.assert_allclose(fresh.transform(A), model.transform(A), atol=1e-6)
    fresh.partial_fit(A[:1024])  # a reloaded bank keeps learning
    assert fresh.components_.shape == (4, 40)
    with pytest.raises(ConceptsError, match="Negative values"):
        MiniBatchNMF(3).fit(signed[0])
    bad = A.copy()
    bad[10, 3] = np.inf
    with pytest.raises(ConceptsError, match="NaN or inf"):
        MiniBatchSemiNMF(3).fit(bad)
    with pytest.raises(ConceptsError, match="not fitted"):
        MiniBatchNMF(3).transform(A)
    with pytest.raises(ConceptsError, match="forget_factor"):
        MiniBatchNMF(3, forget_factor=1.5).fit(A)
