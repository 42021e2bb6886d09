"""Concept importance estimators: Sobol total indices, gradient x input, occlusion.

Each class is a scikit-learn ``BaseEstimator`` (explicit keyword parameters, ``get_params`` /
``set_params`` / ``sklearn.base.clone``) and has one entry point,
``attribute(coefficients, components, head, class_index, *, linear_head=None, residual=None,
prefix=None)``, returning an :class:`ImportanceResult` with per-image importances
(n_images x r) and their class-level aggregate (mean over images, its share of the total, and a
confidence interval across images).

Inputs are generic so that the estimators run on any small torch model:

* ``coefficients`` U: (n_images, N, r) concept coefficients at every position;
* ``components`` W: (r, D) concept bank; the edited activations are ``Ã = (U ⊙ M) W (+ R)``;
* ``head``: ``head(positions (B, N, D)[, prefix]) -> logits (B, C)`` (``ModelSplit.h_positions``);
* ``linear_head``: optional ``(weight, bias)`` when the head is global average pooling + linear.
  Then the class logit is ``const + Σ_k m_k s_k`` with ``s_k = mean_p U_pk (W_k · w_c)`` and
  every method has an exact closed form, used automatically (``exact="auto"``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator

from ..errors import ConceptsError
from .perturb import ConceptScorer, images_and_masks
from .sobol import ESTIMATORS, SAMPLERS, sobol_design, total_indices


@dataclass
class ImportanceResult:
    """Importances of the r concepts of one class.

    ``per_image`` (n_images, r); ``class_importance`` (r,) the signed mean over images; ``share`` (r,)
    ``class_importance / |class_importance|.sum()`` (Lens-style share of the class logit, signed, |shares| sum to 1);
    ``ci_low`` / ``ci_high`` (r,) the ``confidence`` interval of the mean across images
    (Student t), ``share_ci_low`` / ``share_ci_high`` the same interval divided by the total;
    ``positions`` optional (n_images, N, r) per-position contributions;
    ``exact`` whether the closed form of a linear head was used.
    """

    method: str
    per_image: np.ndarray
    class_importance: np.ndarray
    share: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    share_ci_low: np.ndarray
    share_ci_high: np.ndarray
    exact: bool
    settings: dict[str, Any] = field(default_factory=dict)
    positions: np.ndarray | None = None

    def ranking(self) -> np.ndarray:
        """Concept indices from the most to the least important (class level)."""
        return np.argsort(-self.class_importance, kind="stable")


def aggregate(per_image: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, ...]:
    """Class-level mean, share, Student-t confidence interval of the mean over images, and the interval on the
    share scale. NaN rows (skipped images) are ignored.

    The share is the signed mean divided by the sum of the absolute means, ``mean_k / Σ_j |mean_j|``: in [-1, 1],
    ``Σ_k |share_k| = 1``, and the share of a method whose contributions are non-negative (Sobol) is its plain
    fraction of the total. Gradient x input and occlusion can be negative (a concept that lowers the class
    score): their signed shares keep that sign, and a ratio to a signed sum near zero (shares of thousands of %)
    cannot happen.

    Returns ``(mean, share, ci_low, ci_high, share_ci_low, share_ci_high)``, each (r,).
    """
    per_image = np.asarray(per_image, dtype=np.float64)
    valid = per_image[~np.isnan(per_image).any(axis=1)]
    r = per_image.shape[1]
    if len(valid) == 0:
        return tuple(np.full(r, np.nan) for _ in range(6))
    mean = valid.mean(axis=0)
    total = np.abs(mean).sum()  # signed contributions may cancel: divide by their absolute sum, never the signed one
    scale = 1.0 / total if total > 1e-12 else 0.0
    share = mean * scale
    if len(valid) > 1:
        sem = valid.std(axis=0, ddof=1) / np.sqrt(len(valid))
        half = stats.t.ppf(0.5 + confidence / 2.0, len(valid) - 1) * sem
    else:
        half = np.full(r, np.nan)
    low, high = mean - half, mean + half
    share_low, share_high = np.sort(np.stack([low * scale, high * scale]), axis=0)
    return mean, share, low, high, share_low, share_high


class _Base(BaseEstimator):
    """Shared parameters: ``exact`` ('auto': the closed form when a linear head is given, 'always', 'off'),
    ``batch_size`` (head evaluations per batch), ``device``, ``confidence`` (of the interval across images),
    ``progress`` (a progress bar), ``precision`` (autocast of the head: None/'fp32', 'bf16', 'fp16').

    ``attribute(..., on_rows=f)`` calls ``f(k)`` after every batch of ``k`` head evaluations (a progress bar)."""

    method = ""

    def __init__(self, *, exact: str | bool = "auto", batch_size: int = 128,
                 device=None, confidence: float = 0.95, progress: bool = False, precision: str | None = None):
        self.exact = exact
        self.batch_size = batch_size
        self.device = device
        self.confidence = confidence
        self.progress = progress
        self.precision = precision

    def _check_params(self) -> None:
        """Checks of the method's own parameters (ConceptsError); run at construction and by ``attribute``."""

    def _settings(self) -> dict[str, Any]:
        """The parameters recorded with a result: all but ``device`` (a runtime choice)."""
        return {k: v for k, v in self.get_params(deep=False).items() if k != "device"}

    def _use_exact(self, linear_head) -> bool:
        if self.exact not in ("auto", "always", "off", True, False):
            raise ConceptsError(f"exact must be 'auto', 'always' or 'off', not {self.exact!r}")
        if self.exact in (False, "off"):
            return False
        if self.exact in ("always", True) and linear_head is None:
            raise ConceptsError(f"{self.method}: the exact path needs a linear head (weight, bias)")
        return linear_head is not None

    def _scorer(self, coefficients, components, head, class_index, linear_head, residual, prefix, exact,
                on_rows=None):
        scorer = ConceptScorer(
            coefficients, components, head, class_index,
            linear_head=linear_head if exact else None, residual=residual, prefix=prefix,
            batch_size=self.batch_size, device=self.device, precision=self.precision,
        )
        scorer.on_rows = on_rows
        return scorer

    def _result(self, per_image, exact, positions=None, **settings) -> ImportanceResult:
        stats_ = aggregate(per_image, self.confidence)
        params = self._settings()
        params.update(settings)
        return ImportanceResult(self.method, np.asarray(per_image, dtype=np.float64), *stats_,
                                exact=bool(exact), settings=params, positions=positions)


class SobolImportance(_Base):
    """Total-order Sobol indices of concept masks (CRAFT).

    For each image, masks ``M`` in ``[0, 1]^r`` from a QMC design (``designs`` x ``(r + 2)``
    evaluations: matrices A, B and C_i, the same design for every image) scale the
    coefficients; the class logit of ``h((U ⊙ M) W (+ R))`` is read and a total-order estimator
    (``jansen`` by default) gives ``S_Ti`` per image.

    With a linear head the logit is ``const + Σ_k m_k s_k``; ``closed_form`` chooses the exact path:
    ``"analytic"`` (default) the population value for independent identically distributed masks,
    ``S_Tk = s_k^2 / Σ_j s_j^2``; ``"design"`` the estimator applied to the exact logits of the same
    design (identical to the sampled path up to rounding, without calling the head).
    """

    method = "sobol"

    def __init__(self, designs: int = 32, sampler: str = "halton", estimator: str = "jansen",
                 seed: int | None = 0, closed_form: str = "analytic", *, exact: str | bool = "auto",
                 batch_size: int = 128, device=None, confidence: float = 0.95, progress: bool = False,
                 precision: str | None = None):
        super().__init__(exact=exact, batch_size=batch_size, device=device, confidence=confidence, progress=progress,
                         precision=precision)
        self.designs = designs
        self.sampler = sampler
        self.estimator = estimator
        self.seed = seed
        self.closed_form = closed_form
        self._check_params()  # bad settings fail at construction (and again in attribute, after set_params)

    def _check_params(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConceptsError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.estimator not in ESTIMATORS:
            raise ConceptsError(
                f"unknown Sobol estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        if self.closed_form not in ("analytic", "design"):
            raise ConceptsError(f"closed_form must be 'analytic' or 'design', not {self.closed_form!r}")
        if int(self.designs) < 2:
            raise ConceptsError(f"designs must be >= 2 (got {self.designs})")

    def attribute(self, coefficients, components, head, class_index: int, *, linear_head=None, residual=None,
                  prefix=None, on_rows=None) -> ImportanceResult:
        """Per-image total Sobol indices (n_images, r) and their class aggregate."""
        self._check_params()
        exact = self._use_exact(linear_head)
        scorer = self._scorer(coefficients, components, head, class_index, linear_head, residual, prefix, exact,
                              on_rows)
        n, r = scorer.n_images, scorer.n_concepts
        if exact and self.closed_form == "analytic":
            s = scorer.concept_logits().double().cpu().numpy()  # (n, r)
            sq = s ** 2
            tot = sq.sum(axis=1, keepdims=True)
            per_image = np.divide(sq, tot, out=np.zeros_like(sq), where=tot > 0)
            return self._result(per_image, True, evaluations=0)
        designs = int(self.designs)
        design = sobol_design(r, designs, sampler=self.sampler, seed=self.seed).astype(np.float32)
        images, masks = images_and_masks(n, design)
        outputs = scorer.scores(images, masks, progress=self.progress, desc="sobol").reshape(n, len(design))
        per_image = total_indices(outputs, designs, r, estimator=self.estimator)
        return self._result(per_image, exact, evaluations=int(len(design)))


class GradientInput(_Base):
    """Gradient x input on the coefficients: Σ_p U_pk ∂logit_c/∂U_pk per image.

    With a linear head this is exactly the concept's share of the logit, ``s_k`` (computed in
    closed form). ``positions`` of the result holds the per-position terms (contribution maps).
    """

    method = "gradient"

    def attribute(self, coefficients, components, head, class_index: int, *, linear_head=None, residual=None,
                  prefix=None, on_rows=None) -> ImportanceResult:
        exact = self._use_exact(linear_head)
        scorer = self._scorer(coefficients, components, head, class_index, linear_head, residual, prefix, exact,
                              on_rows)
        positions = scorer.gradient_input(progress=self.progress)
        return self._result(positions.sum(axis=1), exact, positions=positions)


class Occlusion(_Base):
    """Drop of the class logit when one concept is removed (its mask set to 0): f(1) - f(1 - e_k).

    With a linear head this equals ``s_k`` (closed form).
    """

    method = "occlusion"

    def attribute(self, coefficients, components, head, class_index: int, *, linear_head=None, residual=None,
                  prefix=None, on_rows=None) -> ImportanceResult:
        exact = self._use_exact(linear_head)
        scorer = self._scorer(coefficients, components, head, class_index, linear_head, residual, prefix, exact,
                              on_rows)
        n, r = scorer.n_images, scorer.n_concepts
        if exact:
            return self._result(scorer.concept_logits().double().cpu().numpy(), True)
        design = np.vstack([np.ones((1, r)), 1.0 - np.eye(r)]).astype(np.float32)
        images, masks = images_and_masks(n, design)
        out = scorer.scores(images, masks, progress=self.progress, desc="occlusion").reshape(n, r + 1)
        return self._result(out[:, :1] - out[:, 1:], False)


def make_method(name: str, **params) -> _Base:
    """An estimator by its registry name (``sobol``, ``gradient``, ``occlusion``) with the params it accepts."""
    from .registry import METHODS

    cls = METHODS[name]
    accepted = set(cls._get_param_names())  # the others (e.g. Sobol's designs for occlusion) are ignored
    return cls(**{k: v for k, v in params.items() if k in accepted})
