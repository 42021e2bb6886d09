"""NMF: planted ground truth per solver, determinism, the NNLS transform, input checks, no dead concepts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls
from sklearn.utils._param_validation import InvalidParameterError

from concepts.errors import ConceptsError
from concepts.factorize import NMF, match_atoms, relative_error
from concepts.factorize import _solvers as S
from concepts.factorize.metrics import dead_concepts


def planted(n=600, d=80, r=6, noise=0.01, seed=0):
    """A = U0 W0 + noise with sparse non-negative factors (identifiable: each atom has private channels)."""
    rng = np.random.default_rng(seed)
    W0 = rng.random((r, d)) ** 6
    W0[:, : r * 3] = 0
    for k in range(r):
        W0[k, 3 * k: 3 * k + 3] = 1.0
    U0 = rng.random((n, r)) ** 3
    A = U0 @ W0 + noise * rng.random((n, d))
    return A.astype(np.float32), U0, W0


@pytest.mark.parametrize("solver,init", [("hals", "nndsvda"), ("hals", "nndsvd"), ("hals", "random"),
                                         ("mu", "nndsvda"), ("mu", "random")])
def test_nmf_recovers_planted_atoms(solver, init):
    A, U0, W0 = planted()
    model = NMF(6, solver=solver, init=init, random_state=0, max_iter=400, tol=1e-6)
    U = model.fit_transform(A)
    mean_cos, pairs = match_atoms(model.components_, W0, signed=True)
    assert mean_cos >= 0.95, (solver, init, mean_cos)
    assert len(pairs) == 6
    assert (model.components_ >= 0).all() and (U >= 0).all()
    # the reported error is the true one, and it is close to the noise level
    assert model.reconstruction_err_ == pytest.approx(relative_error(A, U, model.components_), rel=1e-4)
    assert model.reconstruction_err_ < 0.05
    assert model.n_iter_ >= 1


def test_nmf_same_seed_same_result_and_order_by_mass():
    A, _, _ = planted(seed=1)
    a = NMF(6, init="random", random_state=3).fit(A)
    b = NMF(6, init="random", random_state=3).fit(A)
    np.testing.assert_array_equal(a.components_, b.components_)
    U = a.transform(A)
    mass = np.abs(U).sum(0) * np.linalg.norm(a.components_, axis=1)
    assert (np.diff(mass) <= 1e-6 * mass.max()).all(), mass


def test_nmf_transform_matches_fit_and_solves_nnls():
    A, _, _ = planted(seed=2)
    model = NMF(6, random_state=0)
    U_fit = model.fit_transform(A)
    U = model.transform(A)
    np.testing.assert_allclose(U, U_fit, atol=1e-3 * np.abs(U_fit).max())
    # each row is the non-negative least-squares solution with W fixed (scipy's active-set NNLS)
    W = model.components_.astype(np.float64)
    for i in range(0, 600, 97):
        ref, _ = nnls(W.T, A[i].astype(np.float64))
        np.testing.assert_allclose(U[i], ref, atol=1e-3 * max(ref.max(), 1e-6))
    np.testing.assert_allclose(model.inverse_transform(U), U @ model.components_, rtol=1e-5, atol=1e-6)
    # chunked transform gives the same rows
    model.set_params(chunk_rows=50)
    np.testing.assert_allclose(model.transform(A), U, atol=1e-3 * np.abs(U).max())


def test_nmf_torch_input_gives_torch_output():
    A, _, _ = planted(n=200)
    model = NMF(4, random_state=0, device="cpu")
    U = model.fit_transform(torch.from_numpy(A))
    assert isinstance(U, torch.Tensor) and U.shape == (200, 4)
    assert isinstance(model.transform(A), np.ndarray)


def test_nmf_refuses_negative_values_with_pointer_to_semi_nmf():
    A, _, _ = planted(n=100)
    A[3, 5] = -0.5
    with pytest.raises(ConceptsError) as info:
        NMF(4).fit(A)
    message = str(info.value)
    assert "\n" not in message and "Semi-NMF" in message and "non-negative" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nmf_refuses_nan_and_inf(bad):
    A, _, _ = planted(n=100)
    A[7, 2] = bad
    with pytest.raises(ConceptsError, match="NaN or inf"):
        NMF(4).fit(A)


def test_nmf_refuses_rank_above_data():
    A, _, _ = planted(n=20, d=80)
    with pytest.raises(ConceptsError, match="at most 20"):
        NMF(21).fit(A)
    with pytest.raises(InvalidParameterError, match=r"n_components.*range \[1, inf\)") as info:  # sklearn's check
        NMF(0).fit(A)
    assert isinstance(info.value, ConceptsError)  # still a one-line user error


def test_nmf_unknown_solver_and_init():
    A, _, _ = planted(n=50)
    with pytest.raises(ConceptsError, match="solver"):
        NMF(3, solver="cd").fit(A)
    with pytest.raises(ConceptsError, match="init"):
        NMF(3, init="svd").fit(A)


def test_hals_skips_a_concept_whose_gram_diagonal_is_zero():
    """A row with H_kk = 0 has no defined update: it must be left as is, not zeroed (overcomplete's bug)."""
    X = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    H = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    Q = torch.tensor([[0.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    S.hals_rows(X, Q, H)
    assert X[0].tolist() == [1.0, 2.0, 3.0]
    # row 1: exact minimiser of 0.5*2*x^2 - q*x, clipped: q/2
    assert X[1].tolist() == pytest.approx([0.5, 1.5, 0.0])


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_nmf_reseeds_dead_concepts(monkeypatch, solver):
    """Start with 3 dead concepts (zero atom and coefficients): re-seeding brings every one back."""
    A, _, _ = planted(n=300, d=60, r=6, noise=0.02, seed=4)
    real = S.nndsvd

    def dead_start(X, r, gen, variant="nndsvd"):
        W, Ut = real(X, r, gen, variant)
        W[-3:] = 0
        Ut[-3:] = 0
        return W, Ut

    monkeypatch.setattr(S, "nndsvd", dead_start)
    alive = NMF(8, solver=solver, random_state=0, max_iter=60, n_init=1).fit(A)
    assert len(dead_concepts(alive.transform(A), alive.components_)) == 0
    dead = NMF(8, solver=solver, random_state=0, max_iter=60, reseed_dead=False, n_init=1).fit(A)
    assert len(dead_concepts(dead.transform(A), dead.components_)) == 3
    assert alive.reconstruction_err_ < dead.reconstruction_err_


def test_nmf_keeps_the_best_of_its_starts(monkeypatch):
    """n_init starts: the kept fit is the one with the lowest error, and 'auto' depends on the matrix size."""
    import concepts.factorize.nmf as nmf_module

    A, _, _ = planted(n=200, d=40, r=5, noise=0.3, seed=7)  # noisy: starts end in different optima
    model = NMF(5, n_init=4, random_state=0).fit(A)
    assert len(model.start_errors_) == 4
    assert model.reconstruction_err_ == pytest.approx(min(model.start_errors_), rel=1e-4)  # relative errors
    single = NMF(5, n_init=1, random_state=0).fit(A)
    assert single.start_errors_ == pytest.approx(model.start_errors_[:1], rel=1e-6)  # the first start is init's
    assert model.reconstruction_err_ <= single.reconstruction_err_ * (1 + 1e-6)
    assert len(NMF(5, random_state=0).fit(A).start_errors_) == 3  # 'auto' on a small matrix
    monkeypatch.setattr(nmf_module, "AUTO_MULTI_START_ENTRIES", A.size - 1)
    assert len(NMF(5, random_state=0).fit(A).start_errors_) == 1
    with pytest.raises(ConceptsError, match="n_init"):
        NMF(5, n_init=0).fit(A)


def test_nmf_zero_matrix():
    A = np.zeros((30, 10), np.float32)
    model = NMF(3, random_state=0).fit(A)
    assert model.reconstruction_err_ == 0.0
    assert np.isfinite(model.components_).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_nmf_on_cuda_matches_cpu(solver):
    A, _, W0 = planted()
    cpu = NMF(6, solver=solver, random_state=0, device="cpu", max_iter=300).fit(A)
    gpu = NMF(6, solver=solver, random_state=0, device="cuda", max_iter=300).fit(A)
    assert match_atoms(gpu.components_, W0, signed=True)[0] >= 0.95
    assert match_atoms(gpu.components_, cpu.components_, signed=True)[0] >= 0.99
    U = gpu.transform(torch.from_numpy(A).cuda())
    assert U.device.type == "cuda" and (U >= 0).all()
