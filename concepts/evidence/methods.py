"""What the numbers of each importance method are, and which value the reader is shown.

* Sobol total indices are shown as their **share of the summed Sobol indices** of the class: a variance share,
  which grows with the square of a concept's contribution (it is not a share of the logit).
* Gradient x input and occlusion are in logit units; they are shown as a **share of the class logit** (the mean
  logit of the model over the class's images), so that with a global-average-pool + linear head the concepts,
  the residual and the bias add up to 100% (see :mod:`concepts.evidence.diagnostics`). Where the logit is not
  positive a share of it means nothing: the share of the summed contributions is shown instead, and said so.
* With a linear head, gradient x input and occlusion are the same closed form (each concept's exact term of the
  logit): :func:`coincident_methods` says so, so that they are never presented as two independent agreements.

Values are signed: a concept that lowers the logit has a negative value (drawn left of the axis).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the order in which the atlas picks its default method: the exact share of the logit first
PREFERENCE = ("gradient", "sobol", "occlusion")

#: how each method is named on pages, in tables and in figures
METHOD_LABELS = {"sobol": "Sobol total index", "gradient": "gradient x input", "occlusion": "occlusion"}


@dataclass
class MethodValues:
    """One method's numbers for the r concepts of a class, on the scale the reader is shown."""

    method: str
    label: str  # the method's name
    axis: str  # what a value is, e.g. "share of the class logit"
    values: np.ndarray  # (r,) signed fractions (1 = 100%)
    low: np.ndarray  # (r,) confidence interval on the same scale (NaN where not computed)
    high: np.ndarray
    raw: np.ndarray  # (r,) the method's class importance (Sobol: total index; gradient, occlusion: logit units)
    raw_unit: str
    order: np.ndarray  # concept indices, most important first
    exact: bool  # computed in closed form (linear head)
    of_logit: bool  # values are shares of the real logit

    def rank_of(self) -> dict[int, int]:
        """concept -> rank (1 = most important)."""
        return {int(k): i + 1 for i, k in enumerate(self.order)}


def ranking(class_importance: np.ndarray) -> np.ndarray:
    """Concept indices by decreasing class importance (stable on ties, NaN last): the ranking every table and
    page uses."""
    values = np.nan_to_num(np.asarray(class_importance, np.float64), nan=-np.inf)
    return np.argsort(-values, kind="stable")


def _nan(r: int) -> np.ndarray:
    return np.full(r, np.nan)


def method_values(data, method: str, logit: float | None = None) -> MethodValues:
    """The values shown for ``method`` on a class (``data``: a ClassData); ``logit``: the class's mean real logit
    (from :func:`~concepts.evidence.diagnostics.class_diagnostics`), used by gradient x input and occlusion."""
    imp = data.methods[method]
    raw = np.asarray(imp.class_importance, np.float64)
    r = len(raw)
    exact = bool(imp.attrs.get("exact", False))
    label = METHOD_LABELS.get(method, method)
    if method == "sobol" or method not in METHOD_LABELS:
        low = np.asarray(imp.share_ci_low, np.float64) if imp.share_ci_low is not None else _nan(r)
        high = np.asarray(imp.share_ci_high, np.float64) if imp.share_ci_high is not None else _nan(r)
        axis = "share of the summed Sobol indices" if method == "sobol" else f"share of the summed {label} values"
        return MethodValues(method, label, axis, np.asarray(imp.share, np.float64), low, high, raw,
                            "total index" if method == "sobol" else "", ranking(raw), exact, False)
    if logit is not None and np.isfinite(logit) and logit > 0:
        scale, axis, of_logit = 1.0 / logit, "share of the class logit", True
    else:
        total = raw.sum()
        scale = 1.0 / total if abs(total) > 1e-12 else 0.0
        axis, of_logit = "share of the summed contributions (the mean logit is not positive)", False
    low = np.asarray(imp.ci_low, np.float64) * scale
    high = np.asarray(imp.ci_high, np.float64) * scale
    low, high = np.fmin(low, high), np.fmax(low, high)
    return MethodValues(method, label, axis, raw * scale, low, high, raw, "logit", ranking(raw), exact, of_logit)


def coincident_methods(data) -> dict[str, str]:
    """Methods that are the same numbers as another one by construction: ``{"occlusion": "gradient"}`` when,
    with a global-average-pool + linear head, both were computed as the closed form of each concept's term of the
    logit (and their per-image values are indeed the same)."""
    out: dict[str, str] = {}
    methods = data.methods
    if "gradient" in methods and "occlusion" in methods:
        a, b = methods["gradient"], methods["occlusion"]
        closed = bool(data.importance_attrs.get("linear_head")) and bool(a.attrs.get("exact")) \
            and bool(b.attrs.get("exact"))
        same = a.per_image.shape == b.per_image.shape and np.allclose(a.per_image, b.per_image, rtol=1e-5,
                                                                     atol=1e-6, equal_nan=True)
        if closed and same:
            out["occlusion"] = "gradient"
    return out


def choose_method(available, wanted: str = "auto") -> tuple[str | None, str]:
    """The method a class is ranked by: ``wanted`` when the class has it, else the first of :data:`PREFERENCE`
    it has. Returns ``(method, note)``; the note says why another method was used ('' when none is needed)."""
    available = list(available)
    if wanted != "auto" and wanted in available:
        return wanted, ""
    chosen = next((m for m in PREFERENCE if m in available), available[0] if available else None)
    if wanted != "auto" and chosen is not None:
        return chosen, f"{METHOD_LABELS.get(wanted, wanted)} was not computed for this class; ranked by " \
                       f"{METHOD_LABELS.get(chosen, chosen)}"
    return chosen, ""
