"""Quasi-Monte-Carlo designs and total-order Sobol estimators.

The design follows CRAFT ("Look at the Variance"): two independent matrices ``A`` and ``B``
(``designs`` x ``dim``) are taken from one QMC sequence of dimension ``2 * dim``, and for each
input ``i`` a matrix ``C_i`` equal to ``A`` with column ``i`` taken from ``B``.  The model is
evaluated on the ``designs * (dim + 2)`` stacked rows ``[A; B; C_1; ...; C_dim]`` and a
total-order estimator turns the outputs into one index per input.

Everything here is plain numpy and independent of models, so it can be checked on analytic
test functions (Ishigami).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import qmc

from ..errors import ConceptsError
from .registry import ESTIMATORS, SAMPLERS


def qmc_points(dim: int, n: int, sampler: str = "halton", seed: int | None = 0) -> np.ndarray:
    """``n`` points of ``[0, 1]^dim`` from the named sequence.

    ``sobol`` / ``halton`` are unscrambled (deterministic, CRAFT uses unscrambled Halton),
    ``*-scrambled`` use Owen scrambling seeded by ``seed``; ``random`` is plain uniform
    Monte Carlo.  Unscrambled sequences start at the origin, as in CRAFT (so ``halton``
    reproduces CRAFT's masks exactly).
    """
    if dim < 1 or n < 1:
        raise ConceptsError(f"a QMC design needs dim >= 1 and n >= 1 (got dim={dim}, n={n})")
    if sampler == "random":
        return np.random.default_rng(seed).random((n, dim))
    if sampler in ("sobol", "sobol-scrambled"):
        scramble = sampler.endswith("scrambled")
        engine = qmc.Sobol(dim, scramble=scramble, seed=seed if scramble else None)
    elif sampler in ("halton", "halton-scrambled"):
        scramble = sampler.endswith("scrambled")
        engine = qmc.Halton(dim, scramble=scramble, seed=seed if scramble else None)
    else:
        raise ConceptsError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    import warnings

    with warnings.catch_warnings():  # Sobol warns when n is not a power of two
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(n)


def sobol_design(dim: int, designs: int = 32, sampler: str = "halton", seed: int | None = 0) -> np.ndarray:
    """The stacked Saltelli/CRAFT design ``[A; B; C_1; ...; C_dim]``: ``(designs * (dim + 2), dim)``.

    ``A`` and ``B`` are the two halves of one ``2 * dim``-dimensional QMC sequence;
    ``C_i`` is ``A`` with its column ``i`` replaced by ``B``'s.
    """
    ab = qmc_points(2 * dim, designs, sampler=sampler, seed=seed)
    a, b = ab[:, :dim], ab[:, dim:]
    cs = np.repeat(a[None], dim, axis=0)  # (dim, designs, dim)
    idx = np.arange(dim)
    cs[idx, :, idx] = b.T
    return np.concatenate([a, b, cs.reshape(dim * designs, dim)], axis=0)


def split_outputs(outputs: np.ndarray, designs: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split outputs of :func:`sobol_design` rows (along the last axis) into f(A), f(B), f(C) (dim, designs)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    expected = designs * (dim + 2)
    if outputs.shape[-1] != expected:
        raise ConceptsError(f"expected {expected} outputs for {designs} designs x {dim + 2}, got {outputs.shape[-1]}")
    f_a = outputs[..., :designs]
    f_b = outputs[..., designs : 2 * designs]
    f_c = outputs[..., 2 * designs :].reshape(*outputs.shape[:-1], dim, designs)
    return f_a, f_b, f_c


def total_indices(outputs: np.ndarray, designs: int, dim: int, estimator: str = "jansen") -> np.ndarray:
    """Total-order Sobol indices from the outputs of the stacked design.

    ``outputs`` is ``(..., designs * (dim + 2))`` (leading axes, e.g. images, are batched);
    returns ``(..., dim)``.  With ``V = Var f(A)`` (unbiased, ddof = 1, as CRAFT):

    * ``jansen``:    S_Ti = sum_k (f(A_k) - f(C_i,k))^2 / (2 N V)
    * ``sobol2007``: S_Ti = sum_k f(A_k) (f(A_k) - f(C_i,k)) / (N V)  (equal to Homma-Saltelli's)

    A constant output (V = 0) gives indices of 0.
    """
    f_a, _, f_c = split_outputs(outputs, designs, dim)
    var = f_a.var(axis=-1, ddof=1)[..., None]
    fa = f_a[..., None, :]
    if estimator == "jansen":
        num = ((fa - f_c) ** 2).mean(axis=-1) / 2.0
    elif estimator == "sobol2007":
        num = (fa * (fa - f_c)).mean(axis=-1)
    else:
        raise ConceptsError(f"unknown Sobol estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(var > 1e-12 * np.maximum(1.0, np.abs(f_a).max(axis=-1, keepdims=True)) ** 2, num / var, 0.0)
    return out


def sobol_total_indices(
    func: Callable[[np.ndarray], np.ndarray],
    dim: int,
    designs: int = 32,
    sampler: str = "halton",
    estimator: str = "jansen",
    seed: int | None = 0,
) -> np.ndarray:
    """Total indices of ``func`` (rows of ``[0,1]^dim`` -> scalars) under uniform inputs."""
    design = sobol_design(dim, designs, sampler=sampler, seed=seed)
    outputs = np.asarray(func(design), dtype=np.float64).reshape(-1)
    return total_indices(outputs, designs, dim, estimator=estimator)
