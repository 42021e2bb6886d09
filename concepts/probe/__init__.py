"""``concepts probe RUN``: a linear probe on a head-free backbone's pooled features, for the run's classes.

:func:`probe_run` reads every class's cached activations, runs what follows the cut up to the classifier's input
(the pooled features the head would see), fits a multinomial logistic regression on part of each class's images,
measures its accuracy on the others and writes ``RUN/probe/probe.npz``. The run's importance stage then explains
the probe's logits, without further flags (:func:`concepts.heads.resolve.head_for_artefact`).
"""
from .fitting import ProbeFit, fit_probe, pooled_features
from .stage import ProbeReport, probe_run

__all__ = ["ProbeFit", "ProbeReport", "fit_probe", "pooled_features", "probe_run"]
