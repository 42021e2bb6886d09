"""QMC designs and total-order Sobol estimators against analytic answers."""
import numpy as np
import pytest

from concepts.errors import ConceptsError
from concepts.importance.sobol import qmc_points, sobol_design, sobol_total_indices, total_indices

A_ISH, B_ISH = 7.0, 0.1


def ishigami(x):
    x = -np.pi + 2 * np.pi * x
    return np.sin(x[:, 0]) + A_ISH * np.sin(x[:, 1]) ** 2 + B_ISH * x[:, 2] ** 4 * np.sin(x[:, 0])


def ishigami_total():
    a, b = A_ISH, B_ISH
    var = a**2 / 8 + b * np.pi**4 / 5 + b**2 * np.pi**8 / 18 + 0.5
    v1 = 0.5 * (1 + b * np.pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * np.pi**8 * (1 / 18 - 1 / 50)
    return np.array([v1 + v13, v2, v13]) / var  # ~ [0.5576, 0.4424, 0.2437]


@pytest.mark.parametrize("sampler", ["sobol", "sobol-scrambled", "halton", "halton-scrambled"])
@pytest.mark.parametrize("estimator", ["jansen", "sobol2007"])
def test_ishigami_total_indices_within_0p02_at_4096_designs(sampler, estimator):
    got = sobol_total_indices(ishigami, 3, designs=4096, sampler=sampler, estimator=estimator, seed=0)
    np.testing.assert_allclose(got, ishigami_total(), atol=0.02)


def test_design_structure():
    r, n = 4, 16
    design = sobol_design(r, n, sampler="halton")
    assert design.shape == (n * (r + 2), r)
    a, b, c = design[:n], design[n : 2 * n], design[2 * n :].reshape(r, n, r)
    for i in range(r):
        others = [j for j in range(r) if j != i]
        np.testing.assert_array_equal(c[i][:, others], a[:, others])
        np.testing.assert_array_equal(c[i][:, i], b[:, i])
    assert not np.allclose(a, b)
    assert design.min() >= 0 and design.max() <= 1
    assert np.all(design[0] == 0), "unscrambled sequences start at the origin, as CRAFT's"


def test_scrambled_depends_on_seed_and_unscrambled_does_not():
    assert np.allclose(qmc_points(3, 8, "halton", seed=1), qmc_points(3, 8, "halton", seed=2))
    assert not np.allclose(qmc_points(3, 8, "sobol-scrambled", seed=1), qmc_points(3, 8, "sobol-scrambled", seed=2))
    np.testing.assert_array_equal(qmc_points(3, 8, "sobol-scrambled", 5), qmc_points(3, 8, "sobol-scrambled", 5))


def test_linear_function_total_indices_and_batched_axes():
    coef = np.array([3.0, 1.0, 0.0, 2.0])
    design = sobol_design(4, 2048, sampler="sobol-scrambled", seed=0)
    out = design @ coef
    want = coef**2 / (coef**2).sum()
    got = total_indices(np.stack([out, 2 * out + 5]), 2048, 4)
    np.testing.assert_allclose(got[0], want, atol=0.01)
    np.testing.assert_allclose(got[1], got[0], atol=1e-9)  # affine changes of f leave indices unchanged
    assert got[0, 2] == 0.0


def test_constant_output_gives_zero_and_errors():
    assert np.all(total_indices(np.ones(8 * 5), 8, 3) == 0)
    with pytest.raises(ConceptsError):
        total_indices(np.ones(10), 8, 3)
    with pytest.raises(ConceptsError):
        qmc_points(2, 4, sampler="lattice")


def test_matches_craft_reference_sampler_and_jansen(monkeypatch):
    """Same masks and same Jansen indices as CRAFT (craft-xai) when it is installed."""
    import sys
    import types

    # craft.sobol.sampler imports tensorflow at module level without needing it for these classes
    if "tensorflow" not in sys.modules:
        monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    sampler = pytest.importorskip("craft.sobol.sampler")
    estimators = pytest.importorskip("craft.sobol.estimators")
    r, n = 10, 32
    theirs = sampler.HaltonSequence()(r, nb_design=n)
    ours = sobol_design(r, n, sampler="halton")
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    rng = np.random.default_rng(0)
    outputs = np.tanh(ours @ rng.normal(size=r)) + 0.1 * (ours[:, 0] * ours[:, 3])
    np.testing.assert_allclose(total_indices(outputs, n, r),
                               estimators.JansenEstimator()(theirs, outputs.astype(np.float32), n), rtol=1e-4)
