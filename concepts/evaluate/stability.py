"""Stability of a concept extraction method: does it find the same atoms again?

The method is refitted (a) with different seeds on the same rows and (b) on different subsamples
of the images (rows are drawn image by image, so a subsample keeps whole images), the k-th with
seed ``seeds[k % len(seeds)]`` — so that a method which ignores its data (random atoms) cannot look
stable across subsamples. Every pair of refitted banks is matched one-to-one by the Hungarian algorithm on cosine
similarity (``concepts.factorize.metrics.match_atoms``: ``|cos|``, so that sign flips of PCA / ICA
atoms do not count); the stability is the mean matched similarity, averaged over the pairs.
1 means the same bank every time; random banks in D dimensions score about ``sqrt(2 log r / D)``.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConceptsError
from ..factorize.metrics import match_atoms


def mean_pairwise_match(banks: Sequence[np.ndarray]) -> float:
    """Mean over all pairs of banks of their Hungarian-matched mean |cosine| (nan for fewer than 2 banks)."""
    values = [match_atoms(a, b)[0] for a, b in itertools.combinations(banks, 2)]
    return float(np.mean(values)) if values else float("nan")


def subsample_rows(row_image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of the rows of a random ``fraction`` of the images (at least one image)."""
    images = np.unique(row_image)
    k = max(1, int(round(fraction * len(images))))
    chosen = rng.choice(images, size=k, replace=False)
    return np.flatnonzero(np.isin(row_image, chosen))


def stability(fit_bank: Callable[[np.ndarray, int], np.ndarray], rows: np.ndarray, *,
              row_image: np.ndarray | None = None, seeds: Sequence[int] = (0, 1, 2), n_subsamples: int = 3,
              fraction: float = 0.8, seed: int = 0, banks: dict[str, list] | None = None) -> dict[str, Any]:
    """Seed and subsample stability of ``fit_bank(rows, seed) -> components (r, D)``.

    ``seeds``: the seeds refitted on all ``rows``; ``n_subsamples`` fits (the k-th with seed
    ``seeds[k % len(seeds)]``) on ``fraction`` of the images (``row_image`` gives each row's image; default: every row is its
    own image), drawn with ``seed``. ``banks`` may hold already fitted banks (``{'seed': [bank for
    seeds[0]]}``) to save a fit. Returns ``stability_seed``, ``stability_subsample`` and
    ``stability`` (their mean), plus the banks.
    """
    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise ConceptsError(f"rows must be (n, D); got {rows.shape}")
    if not 0 < fraction <= 1:
        raise ConceptsError(f"subsample fraction must be in (0, 1], got {fraction}")
    row_image = np.arange(len(rows)) if row_image is None else np.asarray(row_image)
    given = dict(banks or {})
    seed_banks = list(given.get("seed", []))
    for s in list(seeds)[len(seed_banks):]:
        seed_banks.append(np.asarray(fit_bank(rows, int(s))))
    rng = np.random.default_rng(seed)
    sub_banks = []
    for k in range(int(n_subsamples)):
        idx = subsample_rows(row_image, fraction, rng)
        sub_banks.append(np.asarray(fit_bank(rows[idx], int(seeds[k % len(seeds)]))))
    by_seed = mean_pairwise_match(seed_banks)
    by_sub = mean_pairwise_match(sub_banks)
    both = [v for v in (by_seed, by_sub) if np.isfinite(v)]
    return {
        "stability_seed": by_seed,
        "stability_subsample": by_sub,
        "stability": float(np.mean(both)) if both else float("nan"),
        "banks": {"seed": seed_banks, "subsample": sub_banks},
    }
