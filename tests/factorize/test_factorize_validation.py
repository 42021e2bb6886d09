"""Parameter validation (registry.validate_params, make_estimator, fit), fitted state, inputs and dtypes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from concepts.errors import ConceptsError
from concepts.evaluate.baselines import RandomAtoms
from concepts.factorize import NMF, PCA, factorize_run
from concepts.factorize.registry import METHODS, make_estimator
from concepts.factorize.validation import validate_params


def _data(name, n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.random((n, d)).astype(np.float32)
    return A if METHODS[name].nonnegative_input else A - 0.5


@pytest.mark.parametrize("params, message", [
    (dict(max_iter=-5), "nmf: max_iter: -5 is not allowed; expected an int in the range [1, inf)"),
    (dict(n_init=0), "nmf: n_init: 0 is not allowed; expected a str among {'auto'} or an int in the range [1, inf)"),
    (dict(n_init="many"), "nmf: n_init: 'many' is not allowed; expected a str among {'auto'} or an int in the range "
                          "[1, inf)"),
    (dict(solver="cd"), "nmf: solver: 'cd' is not allowed; expected a str among {'hals', 'mu'}"),
    (dict(tol=-1.0), "nmf: tol: -1.0 is not allowed; expected a float in the range [0.0, inf)"),
], ids=["max_iter", "n_init_int", "n_init_str", "solver", "tol"])
def test_make_estimator_refuses_bad_values_in_one_line(params, message):
    with pytest.raises(ConceptsError) as info:
        make_estimator("nmf", 10, **params)
    assert str(info.value) == message
    assert isinstance(info.value, InvalidParameterError) and isinstance(info.value, ValueError)


def test_make_estimator_validates_every_method_and_its_aliases():
    with pytest.raises(ConceptsError, match=r"^kmeans: encoding: 'hard' is not allowed; expected a str among "
                                            r"\{'onehot', 'soft'\}$"):
        make_estimator("k-means", 3, encoding="hard")
    with pytest.raises(ConceptsError, match=r"^pca: n_components: 0 is not allowed"):
        make_estimator("pca", 0)
    with pytest.raises(ConceptsError, match=r"^ica: fun: 'tanh' is not allowed"):
        make_estimator("fastica", 3, fun="tanh")
    with pytest.raises(ConceptsError, match=r"^semi_nmf: random_state: -1 is not allowed"):
        make_estimator("semi_nmf", 3, seed=-1)
    for name in METHODS:  # the defaults are allowed
        validate_params(make_estimator(name, 3, seed=0))


def test_validate_params_default_prefix_and_a_valid_estimator():
    assert validate_params(NMF(3, max_inner=None, n_init=2)) is None
    with pytest.raises(ConceptsError, match=r"^random: nnls_iter: 0 is not allowed"):
        validate_params(RandomAtoms(3, nnls_iter=0))
    with pytest.raises(ConceptsError, match=r"^settings: window: 0 is not allowed"):
        validate_params(NMF(3, window=0), prefix="settings")
    with pytest.raises(ConceptsError, match=r"^nmf: reseed_dead: 'yes' is not allowed; expected an instance of 'bool'"):
        validate_params(NMF(3, reseed_dead="yes"))


def test_factorize_run_refuses_a_bad_parameter_before_any_work(tmp_path):
    # no activations at all: the parameter is refused first, by the settings (a common parameter) or by the
    # estimator's own constraints (any other parameter of the method)
    with pytest.raises(ConceptsError, match="^factorize.max_iter: -5 is not allowed; expected an integer >= 1"):
        factorize_run(tmp_path, max_iter=-5, progress=False)
    with pytest.raises(ConceptsError, match="^nmf: inner_tol: -1 is not allowed"):
        factorize_run(tmp_path, params={"inner_tol": -1}, progress=False)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_fit_validates_parameters_set_after_construction(name):
    estimator = make_estimator(name, 3, seed=0).set_params(n_components=-1)
    with pytest.raises(InvalidParameterError, match=r"The 'n_components' parameter of \w+ must be") as info:
        estimator.fit(_data(name))
    assert isinstance(info.value, ConceptsError) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_unfitted_estimators_raise_not_fitted(name):
    estimator = make_estimator(name, 3, seed=0)
    for method in (estimator.transform, estimator.inverse_transform):
        with pytest.raises(NotFittedError, match="not fitted") as info:
            method(np.zeros((2, 3), dtype=np.float32))
        assert isinstance(info.value, ConceptsError)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_sparse_input_is_refused_with_a_clear_message(name):
    A = _data(name)
    with pytest.raises(ConceptsError, match="sparse input is not supported") as info:
        make_estimator(name, 3, seed=0).fit(sparse.csr_matrix(A))
    assert "toarray" in str(info.value)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_float32_and_float64_inputs_give_the_same_float32_result(name):
    A = _data(name)
    U32 = make_estimator(name, 3, seed=0).fit_transform(A)
    model = make_estimator(name, 3, seed=0).fit(A.astype(np.float64))
    U64 = model.transform(A.astype(np.float64))
    assert U32.dtype == U64.dtype == np.float32
    np.testing.assert_array_equal(U32, make_estimator(name, 3, seed=0).fit_transform(A.astype(np.float64)))
    assert model.inverse_transform(U64).dtype == np.float32


def test_channel_count_checked_for_numpy_and_torch_and_clone_is_unfitted():
    A = _data("pca")
    model = PCA(3).fit(A)
    for wrong in (A[:, :5], torch.from_numpy(A[:, :5])):
        with pytest.raises(ValueError, match="X has 5 features, but PCA is expecting 8 features as input") as info:
            model.transform(wrong)
        assert isinstance(info.value, ConceptsError) and "channels" in str(info.value)
    assert model.n_features_in_ == 8
    np.testing.assert_array_equal(model.get_feature_names_out(), ["pca0", "pca1", "pca2"])
    fresh = clone(model)
    assert fresh.get_params() == model.get_params() and not hasattr(fresh, "components_")


def test_centred_methods_need_two_rows_and_rank_at_most_rows_minus_one():
    A = _data("pca", n=4)
    with pytest.raises(ConceptsError, match="n_samples=1"):
        PCA(1).fit(A[:1])
    with pytest.raises(ConceptsError, match="at most 3"):
        PCA(4).fit(A)  # 4 centred rows span at most 3 directions
    assert PCA(3).fit(A).components_.shape == (3, 8)


def test_pickled_estimator_drops_its_device_cache():
    import pickle

    A = _data("nmf")
    model = NMF(3, random_state=0).fit(A)
    assert model._W_cache is not None
    copy = pickle.loads(pickle.dumps(model))
    assert copy._W_cache is None
    np.testing.assert_array_equal(copy.transform(A), model.transform(A))
