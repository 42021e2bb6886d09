"""Dictionary quality measures against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from concepts.factorize.metrics import cosine_matrix, dead_concepts, hoyer, match_atoms, relative_error, sparsity_l0


def test_match_atoms_undoes_a_permutation_scaling_and_sign():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 20))
    perm = rng.permutation(6)
    other = W[perm] * rng.uniform(0.5, 3, size=(6, 1)) * np.array([1, -1, 1, 1, -1, 1])[:, None]
    mean_cos, pairs = match_atoms(W, other)
    assert mean_cos == pytest.approx(1.0)
    assert pairs == sorted((int(p), j) for j, p in enumerate(perm))
    signed_cos, _ = match_atoms(W, other, signed=True)
    assert signed_cos < 1.0  # two flipped atoms count against the signed similarity


def test_match_atoms_is_optimal_not_greedy():
    # unit vectors in the plane (angles in degrees): cos(a0, b0) = 0.9, cos(a0, b1) = cos(a1, b0) = 0.8 and
    # cos(a1, b1) < 0, so greedy (best pair first) takes a0-b0 and is left with a1-b1; the optimum is 0.8 + 0.8
    def unit(deg):
        return [np.cos(np.radians(deg)), np.sin(np.radians(deg))]

    t0, t1 = np.degrees(np.arccos(0.9)), np.degrees(np.arccos(0.8))
    A = np.array([unit(0.0), unit(t0 + t1)])
    B = np.array([unit(t0), unit(-t1)])
    sim = cosine_matrix(A, B)
    mean_cos, pairs = match_atoms(A, B, signed=True)
    best = max(sim[0, 0] + sim[1, 1], sim[0, 1] + sim[1, 0]) / 2
    assert mean_cos == pytest.approx(best)
    assert pairs == [(0, 1), (1, 0)] and mean_cos == pytest.approx(0.8)
    greedy = (sim[0, 0] + sim[1, 1]) / 2
    assert sim[0, 0] == sim.max() and greedy < mean_cos - 0.1


def test_match_atoms_different_sizes():
    W = np.eye(5)
    mean_cos, pairs = match_atoms(W[:3], W)
    assert mean_cos == pytest.approx(1.0) and pairs == [(0, 0), (1, 1), (2, 2)]


def test_relative_error_analytic():
    A = np.array([[3.0, 4.0]])
    U = np.array([[1.0]])
    W = np.array([[3.0, 0.0]])
    assert relative_error(A, U, W) == pytest.approx(4.0 / 5.0)
    assert relative_error(torch.tensor(A), torch.tensor(U), torch.tensor(W)) == pytest.approx(0.8)
    assert relative_error(A, np.zeros((1, 1)), W) == pytest.approx(1.0)


def test_sparsity_and_hoyer():
    U = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    assert sparsity_l0(U) == pytest.approx(3 / 8)
    # Hoyer: one non-zero -> 1, all equal -> 0; mean 0.5
    assert hoyer(U) == pytest.approx(0.5)
    x = np.array([[3.0, 4.0, 0.0, 0.0]])
    expected = (2 - 7 / 5) / (2 - 1)
    assert hoyer(x) == pytest.approx(expected)


def test_dead_concepts():
    U = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    W = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    assert dead_concepts(U).tolist() == [1]
    assert dead_concepts(U, W).tolist() == [1, 2]
