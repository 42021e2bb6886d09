"""Every concept method: planted ground truth, determinism, transform of the training rows, checks."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA

from concepts.errors import ConceptsError
from concepts.factorize import (METHODS, ICA, PCA, DictionaryLearning, KMeans, SemiNMF, make_estimator,
                                match_atoms)


def signed_data(n=500, d=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 6)) @ rng.standard_normal((6, d)) + 0.1 * rng.standard_normal((n, d))).astype(
        np.float32)


def test_semi_nmf_recovers_planted_signed_atoms():
    rng = np.random.default_rng(1)
    r, n, d = 5, 800, 40
    W0 = rng.standard_normal((r, d))
    U0 = rng.random((n, r)) * (rng.random((n, r)) < 0.4)  # sparse non-negative coefficients
    U0[:200] = 0  # anchor rows, one concept each: without them Semi-NMF is not identifiable
    U0[np.arange(200), np.arange(200) % r] = rng.uniform(0.5, 1.5, 200)
    A = (U0 @ W0 + 0.01 * rng.standard_normal((n, d))).astype(np.float32)
    model = SemiNMF(r, random_state=0, max_iter=300)
    U = model.fit_transform(A)
    assert (U >= 0).all()
    assert (model.components_ < 0).any()  # signed atoms
    mean_cos, _ = match_atoms(model.components_, W0, signed=True)
    assert mean_cos >= 0.95
    assert model.reconstruction_err_ < 0.05


def test_pca_matches_scikit_learn():
    A = signed_data()
    ours = PCA(4).fit(A)
    ref = SkPCA(4).fit(A)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-4)
    mean_cos, pairs = match_atoms(ours.components_, ref.components_)
    assert mean_cos > 0.9999 and pairs == [(i, i) for i in range(4)]  # same order: explained variance
    signs = np.sign((ours.components_ * ref.components_).sum(1))
    np.testing.assert_allclose(ours.transform(A), ref.transform(A) * signs, atol=1e-3)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(A)), ref.inverse_transform(ref.transform(A)),
                               atol=1e-3)
    # the sign convention: each atom's largest absolute entry is positive
    idx = np.abs(ours.components_).argmax(1)
    assert (ours.components_[np.arange(4), idx] > 0).all()


def test_ica_recovers_planted_mixing():
    rng = np.random.default_rng(2)
    n, r, d = 3000, 4, 20
    S = rng.laplace(size=(n, r))
    M = rng.standard_normal((d, r))
    A = (S @ M.T + 3.0).astype(np.float32)
    model = ICA(r, random_state=0)
    U = model.fit_transform(A)
    mean_cos, pairs = match_atoms(model.components_, M.T)
    assert mean_cos >= 0.98
    for i, j in pairs:  # the sources too, up to sign
        assert abs(np.corrcoef(U[:, i], S[:, j])[0, 1]) > 0.95
    np.testing.assert_allclose(model.inverse_transform(U), A, atol=1e-3 * np.abs(A).max())


def test_kmeans_finds_planted_centroids_and_codes_one_hot():
    rng = np.random.default_rng(3)
    centers = rng.random((5, 12)) * 10
    labels = rng.integers(0, 5, size=600)
    A = (centers[labels] + 0.1 * rng.standard_normal((600, 12))).astype(np.float32)
    model = KMeans(5, random_state=0)
    U = model.fit_transform(A)
    assert set(np.unique(U)) <= {0.0, 1.0} and (U.sum(1) == 1).all()
    _, pairs = match_atoms(model.components_, centers)
    for i, j in pairs:
        assert np.linalg.norm(model.components_[i] - centers[j]) < 0.1
    found = U.argmax(1)
    mapping = dict(pairs)
    assert (np.array([mapping[k] for k in found]) == labels).all()
    # U W is the nearest centroid
    np.testing.assert_allclose(model.inverse_transform(U), model.components_[found], rtol=1e-6)
    soft = KMeans(5, random_state=0, encoding="soft").fit(A).transform(A)
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)


def test_dictionary_learning_recovers_planted_sparse_atoms():
    rng = np.random.default_rng(4)
    r, n, d = 8, 1500, 40
    W0 = rng.standard_normal((r, d))
    W0 /= np.linalg.norm(W0, axis=1, keepdims=True)
    U0 = np.zeros((n, r))
    for i in range(n):
        k = rng.choice(r, size=2, replace=False)
        U0[i, k] = rng.uniform(1, 2, size=2) * rng.choice([-1, 1], size=2)
    A = (U0 @ W0 + 0.01 * rng.standard_normal((n, d))).astype(np.float32)
    model = DictionaryLearning(r, alpha=0.05, random_state=0)
    U = model.fit_transform(A)
    mean_cos, _ = match_atoms(model.components_, W0)
    assert mean_cos >= 0.95
    assert np.linalg.norm(model.components_, axis=1).max() <= 1 + 1e-5
    assert (np.abs(U) > 1e-6).sum(1).mean() < 4  # sparse codes
    assert model.lambda_ == pytest.approx(0.05 * np.linalg.norm(A, axis=1).mean(), rel=1e-4)


def _data_for(name):
    if name in ("nmf", "minibatch_nmf"):
        rng = np.random.default_rng(5)
        return (rng.random((300, 6)) @ rng.random((6, 30)) + 0.05 * rng.random((300, 30))).astype(np.float32)
    return signed_data(n=300, d=30, seed=5)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_is_deterministic_and_transforms_its_training_rows(name):
    A = _data_for(name)
    a = make_estimator(name, 5, seed=7)
    U_fit = a.fit_transform(A)
    b = make_estimator(name, 5, seed=7).fit(A)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert a.components_.shape == (5, A.shape[1]) and U_fit.shape == (300, 5)
    U = a.transform(A)
    np.testing.assert_allclose(U, U_fit, atol=2e-3 * np.abs(U_fit).max())
    recon = a.inverse_transform(U)
    assert recon.shape == A.shape
    err = np.linalg.norm(A - recon) / np.linalg.norm(A)
    assert err == pytest.approx(a.reconstruction_err_, abs=1e-3)
    assert err < 0.9
    # the concepts are numbered by decreasing key (coefficient mass; variance for PCA); a Matryoshka SAE's order
    # is its nested prefixes instead
    key = (np.square(U_fit).sum(0) if name == "pca"
           else np.abs(U_fit).sum(0) * np.linalg.norm(a.components_, axis=1))
    assert (np.diff(key) <= 1e-5 * key.max()).all() or name == "matryoshka_sae"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_refuses_nan(name):
    A = _data_for(name)
    A[0, 0] = np.nan
    with pytest.raises(ConceptsError, match="NaN or inf"):
        make_estimator(name, 3, seed=0).fit(A)


@pytest.mark.parametrize("name", ["nmf", "semi_nmf", "pca", "ica"])
def test_rank_above_the_data_is_an_error(name):
    A = _data_for(name)[:, :4]
    with pytest.raises(ConceptsError, match="at most 4"):
        make_estimator(name, 5, seed=0).fit(A)


def test_kmeans_rank_limited_by_rows_and_dictionary_may_be_overcomplete():
    A = signed_data(n=6, d=4)
    with pytest.raises(ConceptsError, match="at most 6"):
        KMeans(7).fit(A)
    assert DictionaryLearning(5, random_state=0).fit(A).components_.shape == (5, 4)


def test_registry_names_errors_and_seed_alias():
    assert set(METHODS) == {"nmf", "semi_nmf", "pca", "ica", "kmeans", "dictionary", "relu_sae", "topk_sae",
                            "batchtopk_sae", "jumprelu_sae", "matryoshka_sae", "archetypal_sae", "minibatch_nmf",
                            "minibatch_semi_nmf"}
    assert make_estimator("Semi-NMF", 3, seed=4).random_state == 4
    with pytest.raises(ConceptsError, match="unknown concept method"):
        make_estimator("lda", 3)
    with pytest.raises(ConceptsError, match="no parameter solverr"):
        make_estimator("nmf", 3, solverr="mu")


def test_transform_checks_channels_and_fitted_state():
    A = _data_for("pca")
    with pytest.raises(ConceptsError, match="not fitted"):
        PCA(3).transform(A)
    model = PCA(3).fit(A)
    with pytest.raises(ConceptsError, match="channels"):
        model.transform(A[:, :10])
