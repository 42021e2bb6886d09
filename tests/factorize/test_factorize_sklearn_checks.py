"""Every concept extractor passes scikit-learn's own estimator checks (``sklearn.utils.estimator_checks``).

The instances come from ``registry.METHODS`` (so a newly registered method is checked automatically), plus
the evaluation's ``RandomAtoms`` baseline and a few non-default variants whose code paths differ.

``n_components=2``: the checks fit on tiny matrices with as few as 2 features (20 x 3, 30 x 2, iris 150 x 4
...).  A bank of more concepts than the data's rank is refused with a ValueError (never silently truncated),
so with the default of 10 concepts nearly every check would stop at that refusal; 2 is the largest bank that
fits every check's data.  Checks that need a single concept (1-feature data, 1-D input, subset invariance)
set ``n_components=1`` themselves.  The refusal itself is tested in ``test_factorize_methods.py``.

``device="cpu"``: some checks compare float32 results at a tolerance of ~1e-7 (row subsets against the whole
batch, a second fit against the first); CUDA kernels (other reduction orders, atomic adds in k-means) need not
repeat to the last bit, and the CUDA path has its own tests.  The estimators' default (``device=None``) is
otherwise the same code.
"""
from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from concepts.evaluate.baselines import RandomAtoms
from concepts.factorize.registry import METHODS

#: the streaming estimators (SAE families, mini-batch NMF) train for a few steps on the checks' tiny data
_SMALL = dict(min_steps=5, max_epochs=2)
CHECK_PARAMS = {
    "relu_sae": dict(n_components=8, **_SMALL), "topk_sae": dict(n_components=8, k=2, **_SMALL),
    "batchtopk_sae": dict(n_components=8, k=2, **_SMALL), "jumprelu_sae": dict(n_components=8, **_SMALL),
    "matryoshka_sae": dict(n_components=8, k=2, **_SMALL), "archetypal_sae": dict(n_components=8, k=2, **_SMALL),
    "minibatch_nmf": dict(n_components=2, max_epochs=3), "minibatch_semi_nmf": dict(n_components=2, max_epochs=3),
}

#: non-default settings whose code paths differ enough to be worth the extra seconds
VARIANTS = {
    "nmf": [{"solver": "mu"}],
    "kmeans": [{"encoding": "soft"}],
    "dictionary": [{"positive_code": True, "positive_dict": True}],
}

#: scikit-learn checks expected to fail, per method name, with the reason: {method: {check name: reason}}.
#: Empty: every method passes every check.  ``check_array_api_input`` is skipped by scikit-learn itself
#: (SCIPY_ARRAY_API is not set, and the extractors do not claim array-API support), which is not a failure.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {name: {} for name in [*METHODS, "random"]}


def _instances() -> list[tuple[str, object]]:
    out = []
    for name, cls in METHODS.items():
        base = {"device": "cpu", **CHECK_PARAMS.get(name, {"n_components": 2})}
        out.append((name, cls(**base)))
        out.extend((name, cls(**base, **params)) for params in VARIANTS.get(name, []))
    out.append(("random", RandomAtoms(n_components=2, device="cpu")))
    return out


_INSTANCES = _instances()
_ESTIMATORS = [estimator for _, estimator in _INSTANCES]
_NAME_OF = {id(estimator): name for name, estimator in _INSTANCES}


def _expected_failures(estimator) -> dict[str, str]:
    return EXPECTED_FAILED_CHECKS[_NAME_OF[id(estimator)]]


def test_every_registered_method_is_checked():
    checked = {type(estimator) for estimator in _ESTIMATORS}
    assert set(METHODS.values()) | {RandomAtoms} <= checked
    assert set(EXPECTED_FAILED_CHECKS) == set(METHODS) | {"random"}


@parametrize_with_checks(_ESTIMATORS, expected_failed_checks=_expected_failures)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
