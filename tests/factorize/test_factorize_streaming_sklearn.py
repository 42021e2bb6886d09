"""scikit-learn's estimator checks on the streaming estimators (SAE families, mini-batch NMF / Semi-NMF).

Small widths and schedules keep the ~47 checks per estimator fast; every check passes (no expected failures).
"""
from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from concepts.factorize.minibatch_nmf import MiniBatchNMF, MiniBatchSemiNMF
from concepts.factorize.sae import (ArchetypalSAE, BatchTopKSAE, JumpReLUSAE, MatryoshkaSAE, ReLUSAE,
                                    TopKSAE)

SMALL = dict(min_steps=5, max_epochs=2)

ESTIMATORS = [ReLUSAE(8, **SMALL), TopKSAE(8, k=2, **SMALL), BatchTopKSAE(8, k=2, **SMALL),
              JumpReLUSAE(8, **SMALL), MatryoshkaSAE(8, k=2, **SMALL), ArchetypalSAE(8, k=2, **SMALL),
              MiniBatchNMF(3, max_epochs=3), MiniBatchSemiNMF(3, max_epochs=3)]


@pytest.mark.slow
@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
