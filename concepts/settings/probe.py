"""``probe``: the linear probe that ``concepts probe RUN`` trains on a head-free backbone's pooled features."""
from __future__ import annotations

from .base import Section, setting


class ProbeSettings(Section):
    """``concepts probe``: a multinomial logistic regression on the pooled features the head would see, for the run's
    classes; its held-out accuracy is measured on images it was not fitted on."""

    section = "probe"

    holdout: float = setting(0.25, "share of each class's images held out to measure the probe's accuracy "
                                   "(concepts probe)", gt=0, lt=1, run_flag="--probe-holdout")
    regularization: float = setting(1.0, "inverse L2 strength C of the logistic regression (concepts probe)", gt=0,
                                    run_flag="--probe-regularization")
    max_iter: int = setting(1000, "iterations of the solver (concepts probe)", ge=1, run_flag="--probe-max-iter")
    seed: int = setting(0, "seed of the held-out split (concepts probe)", ge=0, run_flag="--probe-seed")
    batch_size: int = setting(32, "images per forward pass of the features (concepts probe)", ge=1, hashed=False,
                              run_flag="--probe-batch-size")
