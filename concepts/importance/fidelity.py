"""Concept fidelity metrics (Holistic CRAFT): C-Deletion, C-Insertion, C-μFidelity, and the
reconstruction fidelity of the split.

All metrics work on the class score of ``h((U ⊙ M) W (+ R))`` (:class:`ConceptScorer`), so the
switches are the scorer's: ``residual`` added back or not, ``score`` logit or probability.

* C-Deletion: remove concepts (mask 0) in decreasing importance; the score curve over the
  fraction removed (``steps + 1`` points from 0 to 1); area under the mean curve, lower is better.
* C-Insertion: start from all concepts removed and add them in decreasing importance; higher is
  better.
* C-μFidelity: for random subsets S of concepts (each concept removed with probability
  ``fraction``), the correlation (``spearman`` or ``pearson``) between the score drop
  ``f(1) - f(1 - 1_S)`` and ``Σ_{k∈S} importance_k``, per image, averaged over images.

``importance`` is (r,) (one class ranking for every image) or (n_images, r) (per image).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from ..errors import ConceptsError
from .perturb import ConceptScorer


def _per_image(importance, n: int, r: int) -> np.ndarray:
    imp = np.asarray(importance, dtype=np.float64)
    if imp.ndim == 1:
        imp = np.broadcast_to(imp, (n, r))
    if imp.shape != (n, r):
        raise ConceptsError(f"importance must be ({r},) or ({n}, {r}); got {imp.shape}")
    return np.nan_to_num(imp, nan=-np.inf)


def _step_counts(r: int, steps: int | None) -> np.ndarray:
    steps = r if steps is None else max(1, int(steps))
    return np.unique(np.round(np.linspace(0, r, steps + 1)).astype(int))


def _curve(scorer: ConceptScorer, importance, steps: int | None, insertion: bool) -> dict[str, Any]:
    n, r = scorer.n_images, scorer.n_concepts
    imp = _per_image(importance, n, r)
    order = np.argsort(-imp, axis=1, kind="stable")  # most important first
    counts = _step_counts(r, steps)
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(r)[None]
    # masks[i, j, k]: is concept k of image i kept at step j
    touched = rank[:, None, :] < counts[None, :, None]
    masks = touched if insertion else ~touched
    images = np.repeat(np.arange(n), len(counts))
    scores = scorer.scores(images, masks.reshape(-1, r).astype(np.float32)).reshape(n, len(counts))
    x = counts / r
    per_image_auc = np.trapezoid(scores, x, axis=1) if hasattr(np, "trapezoid") else np.trapz(scores, x, axis=1)
    mean_curve = scores.mean(axis=0)
    return {"auc": float(per_image_auc.mean()), "per_image": per_image_auc, "curve": mean_curve, "x": x,
            "curves": scores}


def c_deletion(scorer: ConceptScorer, importance, steps: int | None = None) -> dict[str, Any]:
    """C-Deletion: area under the class-score curve as concepts are removed in importance order (lower is better)."""
    return _curve(scorer, importance, steps, insertion=False)


def c_insertion(scorer: ConceptScorer, importance, steps: int | None = None) -> dict[str, Any]:
    """C-Insertion: area under the class-score curve as concepts are added in importance order (higher is better)."""
    return _curve(scorer, importance, steps, insertion=True)


def c_mufidelity(scorer: ConceptScorer, importance, n_subsets: int = 128, fraction: float = 0.5,
                 correlation: str = "spearman", seed: int | None = 0) -> dict[str, Any]:
    """C-μFidelity: mean over images of corr(score drop of a random concept subset, its summed importance)."""
    if correlation not in ("spearman", "pearson"):
        raise ConceptsError(f"correlation must be spearman or pearson, not {correlation!r}")
    n, r = scorer.n_images, scorer.n_concepts
    imp = np.nan_to_num(np.asarray(_per_image(importance, n, r), dtype=np.float64), neginf=0.0)
    rng = np.random.default_rng(seed)
    removed = rng.random((n_subsets, r)) < fraction  # the same subsets for every image
    design = np.vstack([np.ones((1, r)), ~removed]).astype(np.float32)
    images = np.repeat(np.arange(n), len(design))
    scores = scorer.scores(images, np.tile(design, (n, 1))).reshape(n, len(design))
    drops = scores[:, :1] - scores[:, 1:]  # (n, n_subsets)
    attributed = imp @ removed.T.astype(np.float64)  # (n, n_subsets)
    corr = np.full(n, np.nan)
    fn = stats.spearmanr if correlation == "spearman" else stats.pearsonr
    for i in range(n):
        if np.ptp(drops[i]) > 0 and np.ptp(attributed[i]) > 0:
            corr[i] = fn(drops[i], attributed[i])[0]
    value = float(np.nanmean(corr)) if np.isfinite(corr).any() else float("nan")
    return {"value": value, "per_image": corr}


def reconstruction_parts(activations, coefficients, components, head, class_index: int, *, prefix=None,
                         batch_size: int = 64, device=None, precision: str | None = None) -> dict[str, np.ndarray]:
    """Per-image pieces of :func:`reconstruction_fidelity`: class logits of h(A) and h(UW), and the
    squared norms ``||A - UW||^2`` and ``||A||^2`` per image."""
    import torch

    n, n_pos, dim = tuple(np.shape(activations))
    # h(A): no concepts (one all-zero concept) and A as the residual
    scorer_full = ConceptScorer(torch.zeros(n, n_pos, 1), torch.zeros(1, dim), head, class_index, residual=activations,
                                prefix=prefix, batch_size=batch_size, device=device, precision=precision)
    scorer_recon = ConceptScorer(coefficients, components, head, class_index, prefix=prefix, batch_size=batch_size,
                                 device=device, precision=precision)
    with torch.no_grad():
        a = scorer_full.residual
        diff = a - scorer_recon.U @ scorer_recon.W
        err2 = (diff.double() ** 2).sum(dim=(1, 2)).cpu().numpy()
        norm2 = (a.double() ** 2).sum(dim=(1, 2)).cpu().numpy()
    return {"logit_original": scorer_full.full_scores(), "logit_reconstructed": scorer_recon.full_scores(),
            "error2": err2, "norm2": norm2}


def summarize_reconstruction(parts: dict[str, np.ndarray]) -> dict[str, float]:
    """Class-level summary of (concatenated) :func:`reconstruction_parts`."""
    full, recon = np.asarray(parts["logit_original"]), np.asarray(parts["logit_reconstructed"])
    corr = float(np.corrcoef(full, recon)[0, 1]) if len(full) > 1 and full.std() > 0 and recon.std() > 0 \
        else float("nan")
    norm = float(np.sum(parts["norm2"]))
    return {
        "logit_original": float(full.mean()),
        "logit_reconstructed": float(recon.mean()),
        "logit_ratio": float(recon.mean() / full.mean()) if full.mean() != 0 else float("nan"),
        "logit_correlation": corr,
        "logit_abs_diff": float(np.abs(full - recon).mean()),
        "relative_error": float(np.sqrt(np.sum(parts["error2"]) / norm)) if norm > 0 else float("nan"),
    }


def reconstruction_fidelity(activations, coefficients, components, head, class_index: int, *, prefix=None,
                            batch_size: int = 64, device=None) -> dict[str, float]:
    """How well the concept split reproduces the model: class logit of h(UW) against h(A).

    ``activations`` (n, N, D) positions, ``coefficients`` (n, N, r), ``components`` (r, D).
    Returns the mean class logit of h(A) and of h(UW), their ratio, the Pearson correlation
    across images, the mean absolute difference, and the relative reconstruction error
    ``||A - UW|| / ||A||`` on these positions.
    """
    return summarize_reconstruction(reconstruction_parts(activations, coefficients, components, head, class_index,
                                                         prefix=prefix, batch_size=batch_size, device=device))
