"""Sparse autoencoders: planted ground truth, determinism, exact save/reload, the families' own properties."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from concepts.errors import ConceptsError
from concepts.extract import ActivationCache
from concepts.factorize.metrics import match_atoms
from concepts.factorize.sae import (ArchetypalSAE, BatchTopKSAE, JumpReLUSAE, MatryoshkaSAE, ReLUSAE,
                                    SparseAutoencoder, TopKSAE)
from concepts.factorize.stream import RowStream
from fake_artefacts import write_patches_activations


def planted_sparse(n=6000, d=32, r=16, active=3, seed=0, noise=0.01, offset=0.5):
    """Rows made of ``active`` unit atoms out of ``r`` with positive coefficients, plus an offset and noise."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((r, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    U = np.zeros((n, r))
    for i in range(n):
        idx = rng.choice(r, active, replace=False)
        U[i, idx] = rng.uniform(0.5, 2.0, active)
    A = U @ W + offset * rng.standard_normal(d) + noise * rng.standard_normal((n, d))
    return A.astype(np.float32), W


def planted_archetypes(n=4000, d=24, r=8, seed=1):
    """Non-negative rows: conic mixtures of 1-3 non-negative archetypes (pure rows included)."""
    rng = np.random.default_rng(seed)
    W = rng.random((r, d)) * (rng.random((r, d)) < 0.5)
    U = np.zeros((n, r))
    for i in range(n):
        idx = rng.choice(r, rng.integers(1, 4), replace=False)
        U[i, idx] = rng.uniform(0.5, 2.0, len(idx))
    return (U @ W + 0.01 * rng.random((n, d))).astype(np.float32), W


FAST = dict(batch_size=256, n_steps=300, lr=2e-3, dead_rows=20000, init_rows=4096, eval_rows=4096)

FAMILIES = {
    "relu": lambda seed=0, **kw: ReLUSAE(24, l1_coef=2e-2, random_state=seed, **{**FAST, **kw}),
    "topk": lambda seed=0, **kw: TopKSAE(24, k=3, random_state=seed, **{**FAST, **kw}),
    "batchtopk": lambda seed=0, **kw: BatchTopKSAE(24, k=3, random_state=seed, **{**FAST, **kw}),
    "jumprelu": lambda seed=0, **kw: JumpReLUSAE(24, l0_coef=2e-2, random_state=seed, **{**FAST, **kw}),
    "matryoshka": lambda seed=0, **kw: MatryoshkaSAE(24, k=3, prefixes=[6, 12], random_state=seed,
                                                     **{**FAST, **kw}),
    "archetypal": lambda seed=0, **kw: ArchetypalSAE(24, k=3, n_candidates=64, random_state=seed,
                                                     **{**FAST, **kw}),
}


@pytest.fixture(scope="module")
def sparse_data():
    return planted_sparse()


def test_topk_recovers_a_planted_sparse_dictionary(sparse_data):
    A, W = sparse_data
    model = TopKSAE(16, k=3, batch_size=256, n_steps=800, lr=3e-3, dead_rows=20000, random_state=0).fit(A)
    mean_cos, _ = match_atoms(model.components_, W, signed=True)
    assert mean_cos > 0.9
    np.testing.assert_allclose(np.linalg.norm(model.components_, axis=1), 1.0, rtol=1e-5)  # unit atoms
    Z = model.transform(A)
    assert Z.shape == (len(A), 16) and (Z >= 0).all() and ((Z > 0).sum(1) <= 3).all()
    assert model.normalized_mse_ < 0.1 and model.l0_ <= 3
    # the decoder bias started at the data's median and followed the offset
    assert np.linalg.norm(model.decoder_bias_ - np.median(A, axis=0)) < 0.5 * np.linalg.norm(np.median(A, axis=0))
    # the training history records loss, normalised MSE, L0 and dead share
    assert {"loss", "nmse", "l0", "dead_share", "lr"} <= set(model.history_[-1])
    assert model.history_[-1]["nmse"] < model.history_[0]["nmse"]


def test_relu_l1_recovers_the_planted_atoms_with_sparse_codes(sparse_data):
    A, W = sparse_data
    model = FAMILIES["relu"](n_steps=500).fit(A)
    mean_cos, _ = match_atoms(model.components_, W, signed=True)
    assert mean_cos > 0.9
    assert model.l0_ < 6  # three planted atoms a row; the L1 penalty keeps the codes sparse


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_is_deterministic_on_cpu_and_seeded(name, sparse_data):
    A, _ = sparse_data
    A = A if name != "archetypal" else np.abs(A)
    a = FAMILIES[name](seed=3, n_steps=30).fit(A)
    b = FAMILIES[name](seed=3, n_steps=30).fit(A)
    c = FAMILIES[name](seed=4, n_steps=30).fit(A)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.transform(A[:200]), b.transform(A[:200]))
    assert not np.array_equal(a.components_, c.components_)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_saves_and_reloads_exactly(name, sparse_data):
    A, _ = sparse_data
    A = A if name != "archetypal" else np.abs(A)
    model = FAMILIES[name](n_steps=40).fit(A)
    state = model.state_arrays()
    assert set(state) == set(type(model)._state) and "encoder_weight_" in state
    # what the project's stage does: arrays to a file, a fresh estimator with the same parameters, load_state
    saved = {k: np.array(v) for k, v in state.items()}
    fresh = type(model)(**model.get_params()).load_state(model.components_.copy(), saved, {"n_iter_": 40})
    np.testing.assert_allclose(fresh.transform(A), model.transform(A), atol=1e-6)
    np.testing.assert_allclose(fresh.inverse_transform(model.transform(A[:50])),
                               model.inverse_transform(model.transform(A[:50])), atol=1e-6)
    assert fresh.n_iter_ == 40
    # the reloaded model can keep training (partial_fit continues from the saved state)
    fresh.partial_fit(A[:512])
    assert fresh.n_iter_ == 42


def test_batchtopk_threshold_is_saved_and_used_at_inference(sparse_data):
    A, _ = sparse_data
    model = FAMILIES["batchtopk"](n_steps=300).fit(A)
    Z = model.transform(A)
    # calibrated on the training rows: k active latents a row on average (rows vary, unlike TopK)
    assert abs((Z > 0).sum(1).mean() - 3) < 0.2 and (Z > 0).sum(1).std() > 0
    # the rule is a threshold on the pre-activations, the saved one
    pre = (A - model.decoder_bias_) @ model.encoder_weight_.T + model.encoder_bias_
    np.testing.assert_array_equal(Z > 0, pre > model.threshold_)
    assert model.running_threshold_ > 0
    state = model.state_arrays()
    assert "threshold_" in state
    raised = dict(state, threshold_=np.float32(2 * model.threshold_))
    other = BatchTopKSAE(**model.get_params()).load_state(model.components_, raised)
    assert (other.transform(A) > 0).sum() < (Z > 0).sum()  # a reloaded model does use the saved threshold
    uncalibrated = FAMILIES["batchtopk"](n_steps=300, threshold_calibration=False).fit(A)
    assert uncalibrated.threshold_ == uncalibrated.running_threshold_


def test_jumprelu_thresholds_move_during_training(sparse_data):
    A, W = sparse_data
    model = FAMILIES["jumprelu"](n_steps=600).fit(A)
    theta0 = model.threshold_init / model.scale_  # the initial threshold, in data units
    moved = np.abs(np.log(model.threshold_ / theta0))
    assert np.median(moved) > np.log(2)  # the typical threshold travelled by a factor of 2 or more
    assert model.l0_ < 8  # and the thresholds, not only the encoder, made the codes sparse
    pre = (A - model.decoder_bias_) @ model.encoder_weight_.T + model.encoder_bias_
    np.testing.assert_array_equal(model.transform(A) > 0, pre > model.threshold_[None, :])
    mean_cos, _ = match_atoms(model.components_, W, signed=True)
    assert mean_cos > 0.7


def test_archetypal_atoms_stay_within_delta_of_the_candidates_hull():
    A, W = planted_archetypes()
    model = ArchetypalSAE(8, k=3, n_candidates=48, delta=0.1, batch_size=256, n_steps=600, lr=2e-3,
                          dead_rows=20000, random_state=0).fit(A)
    C = model.candidates_
    assert C.shape == (48, A.shape[1])
    np.testing.assert_allclose(model.mixing_.sum(1), 1.0, rtol=1e-5)
    assert (model.mixing_ >= 0).all()
    assert np.linalg.norm(model.relaxation_, axis=1).max() <= model.delta_ * (1 + 1e-4)
    np.testing.assert_allclose(model.components_, model.mixing_ @ C + model.relaxation_, atol=1e-4)
    # independently: the distance of every atom to conv(C) (NNLS with a heavily weighted sum-to-one row)
    big = 1e3 * np.abs(C).max()
    M = np.vstack([C.T, np.full((1, len(C)), big)])
    for atom in model.components_:
        lam, _ = nnls(M, np.concatenate([atom, [big]]))
        assert np.linalg.norm(atom - lam @ C) <= model.delta_ * 1.01 + 1e-4
    # the candidates are inside the data's hull (centroids) and the reconstruction is usable
    assert C.min() >= A.min() - 1e-6 and model.normalized_mse_ < 0.4
    assert model.decoder_bias_.max() == 0  # no decoder bias: the atoms are data-like points
    mean_cos, _ = match_atoms(model.components_, W, signed=True)
    assert mean_cos > 0.85  # the archetypes themselves (a plain TopK SAE finds ~0.65 here)


def test_matryoshka_prefixes_reconstruct_better_than_random_subsets(sparse_data):
    A, _ = sparse_data
    model = FAMILIES["matryoshka"](n_steps=600).fit(A)
    assert list(model.prefix_sizes_) == [6, 12, 24]
    Z = model.transform(A)

    def err(keep):
        Zk = np.zeros_like(Z)
        Zk[:, keep] = Z[:, keep]
        return np.linalg.norm(A - model.inverse_transform(Zk)) / np.linalg.norm(A - A.mean(0))

    rng = np.random.default_rng(0)
    prefix = err(np.arange(6))
    random = [err(rng.choice(24, 6, replace=False)) for _ in range(20)]
    assert prefix < np.percentile(random, 10)
    np.testing.assert_array_equal(model.prefix_transform(A, 6)[:, 6:], 0)
    with pytest.raises(ConceptsError, match="prefix"):
        MatryoshkaSAE(24, prefixes=[30]).fit(A)


def test_auxk_revives_latents_that_die_without_it():
    A, _ = planted_sparse(n=8000, d=32, r=64, active=2, seed=5)
    common = dict(batch_size=128, n_steps=600, lr=3e-3, dead_rows=2560, random_state=0)
    none = TopKSAE(64, k=2, dead_latents="none", **common).fit(A)
    auxk = TopKSAE(64, k=2, dead_latents="auxk", **common).fit(A)
    assert none.dead_share_ > 0.05  # latents that stopped firing stay dead without help
    assert auxk.dead_share_ <= 0.5 * none.dead_share_
    assert auxk.normalized_mse_ <= none.normalized_mse_ * 1.02


def test_resampling_puts_dead_atoms_on_the_worst_residuals(sparse_data):
    A, _ = sparse_data
    model = TopKSAE(16, k=3, dead_latents="resample", n_steps=20, batch_size=256, random_state=0).fit(A)
    tr = model._trainer_
    x = torch.from_numpy(A[:64]) * tr.scale
    x_hat = x.mean(0, keepdim=True).expand_as(x).clone()
    x_hat[:60] = x[:60]  # only rows 60..63 are badly reconstructed
    dead = torch.zeros(16, dtype=torch.bool)
    dead[[2, 5]] = True
    before = tr.params["D"].clone()
    with torch.no_grad():
        model._resample(x, x_hat, dead, tr)
    D = tr.params["D"].detach()
    assert torch.equal(D[~dead], before[~dead])
    resid = x[60:] - x_hat[60:]
    resid = resid / resid.norm(dim=1, keepdim=True)
    for k in (2, 5):
        assert float(torch.norm(D[k])) == pytest.approx(1.0, rel=1e-5)
        assert float((resid @ D[k]).max()) == pytest.approx(1.0, abs=1e-5)  # one of the bad rows' residuals
    assert int(tr.last_fired[2]) == tr.rows  # and they get a fresh start before counting as dead again


def test_learning_rate_warms_up_and_decays():
    model = TopKSAE(8, lr=1e-3, warmup_steps=10, lr_decay="linear", decay_start=0.5)
    assert model._lr_at(0, 100) == pytest.approx(1e-4)
    assert model._lr_at(9, 100) == pytest.approx(1e-3)
    assert model._lr_at(40, 100) == pytest.approx(1e-3)
    assert model._lr_at(75, 100) == pytest.approx(0.5e-3)
    cosine = TopKSAE(8, lr=1e-3, warmup_steps=0, lr_decay="cosine", decay_start=0.0)
    assert cosine._lr_at(50, 100) == pytest.approx(0.5e-3)
    assert TopKSAE(8, lr=1e-3, lr_decay="constant", warmup_steps=0)._lr_at(99, 100) == pytest.approx(1e-3)


def test_a_small_data_set_trains_at_least_min_steps_by_default_and_converges_further():
    """By default a data set too small for ``max_epochs`` x batches to reach ``min_steps`` (2000) trains 2000 steps:
    the 200-step schedule of earlier versions left the SAE far from converged on small sets (docs/evaluation.md)."""
    A, W = planted_sparse(n=1024, d=16, r=8, active=2, seed=3)
    assert TopKSAE().min_steps == 2000
    default = TopKSAE(8, k=2, batch_size=256, random_state=0).fit(A)
    short = TopKSAE(8, k=2, batch_size=256, min_steps=200, random_state=0).fit(A)
    assert default.n_iter_ == 2000 and short.n_iter_ == 200  # 10 epochs of 4 batches = 40 steps, raised to min_steps
    assert default.history_[-1]["nmse"] < 0.5 * short.history_[-1]["nmse"]
    assert match_atoms(default.components_, W, signed=True)[0] > match_atoms(short.components_, W, signed=True)[0]


def test_fit_from_a_row_stream_over_hdf5_caches(tmp_path, sparse_data):
    A, W = sparse_data
    paths = [write_patches_activations(tmp_path / "run", f"c{i}", A[i * 3000:(i + 1) * 3000].reshape(300, 10, -1))
             for i in range(2)]
    caches = [ActivationCache(p) for p in paths]
    try:
        stream = RowStream(caches, batch_size=256, buffer_rows=2000, seed=0)
        model = TopKSAE(16, k=3, n_steps=400, lr=3e-3, batch_size=256, dead_rows=20000, random_state=0).fit(stream)
        again = TopKSAE(16, k=3, n_steps=400, lr=3e-3, batch_size=256, dead_rows=20000, random_state=0).fit(stream)
        np.testing.assert_array_equal(model.components_, again.components_)  # the stream is seeded too
        assert model.n_features_in_ == A.shape[1] and model.n_iter_ == 400
        assert model.normalized_mse_ < 0.5
        # a batch size other than the stream's is re-batched
        other = TopKSAE(16, k=3, n_steps=20, batch_size=100, random_state=0).fit(stream)
        assert other.n_rows_seen_ == 2000
    finally:
        for c in caches:
            c.close()


def test_bad_input_is_a_clear_error(sparse_data):
    A, _ = sparse_data
    bad = A.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ConceptsError, match="NaN"):
        TopKSAE(8, k=2, n_steps=5).fit(bad)
    with pytest.raises(ValueError, match="NaN"):  # also what scikit-learn expects
        TopKSAE(8, k=2, n_steps=5).fit(bad)
    model = TopKSAE(8, k=2, n_steps=5, random_state=0).fit(A)
    with pytest.raises(ConceptsError, match="features"):
        model.transform(A[:, :5])
    with pytest.raises(ConceptsError, match="not fitted"):
        TopKSAE(8).transform(A)
    with pytest.raises(ConceptsError, match="lr"):
        TopKSAE(8, lr=-1.0).fit(A)
    with pytest.raises(ConceptsError, match="lacks"):
        TopKSAE(8).load_state(model.components_, {})


def test_torch_inputs_give_torch_outputs_and_pickling_keeps_the_model(sparse_data):
    import pickle

    A, _ = sparse_data
    model = FAMILIES["batchtopk"](n_steps=40).fit(torch.from_numpy(A))
    Z = model.transform(torch.from_numpy(A[:64]))
    assert isinstance(Z, torch.Tensor) and Z.shape == (64, 24)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.transform(A[:64]), Z.numpy())
    sp = model.encode_sparse(A[:64])
    np.testing.assert_array_equal(sp.toarray(), Z.numpy())


def test_the_base_class_is_abstract(sparse_data):
    A, _ = sparse_data
    with pytest.raises(NotImplementedError):
        SparseAutoencoder(4, n_steps=1).fit(A)
