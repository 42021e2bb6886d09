"""Numbers the atlas shows: concentration of importance, similar concepts (in a class and across classes),
the 2-D image map."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evidence.crops import top_rows  # noqa: F401 (the crops' selection, defined with the crops)


def concentration(share: np.ndarray) -> float:
    """Herfindahl index of the (clipped, renormalised) shares: 1 when one concept explains all,
    ``1/r`` when importance is spread evenly over ``r`` concepts."""
    p = np.clip(np.asarray(share, dtype=np.float64), 0, None)
    total = p.sum()
    if total <= 0:
        return 0.0
    p = p / total
    return float((p ** 2).sum())


def n_important(share: np.ndarray, mass: float = 0.8) -> int:
    """Smallest number of concepts (taken by decreasing share) whose shares reach ``mass`` of the total."""
    p = np.sort(np.clip(np.asarray(share, dtype=np.float64), 0, None))[::-1]
    total = p.sum()
    if total <= 0 or len(p) == 0:
        return 0
    return int(np.searchsorted(np.cumsum(p) / total, mass - 1e-12) + 1)


@dataclass(frozen=True)
class Neighbour:
    class_pos: int  # index into the list of banks
    concept: int  # index into that class's bank
    cosine: float


def similar_concepts(banks: list[np.ndarray], k: int = 3) -> list[list[list[Neighbour]]]:
    """For every concept of every class, the ``k`` most similar concepts of *other* classes.

    Similarity is the cosine between concept vectors (rows of the banks); banks whose
    dimension differs from the first are left without neighbours. Computed class by class,
    so memory stays at (r x total concepts).
    """
    if not banks:
        return []
    dim = banks[0].shape[1]
    usable = [b.shape[1] == dim for b in banks]
    owners, concepts, rows = [], [], []
    for pos, bank in enumerate(banks):
        if not usable[pos]:
            continue
        norms = np.linalg.norm(bank, axis=1, keepdims=True)
        rows.append(bank / np.where(norms > 0, norms, 1.0))
        owners.append(np.full(len(bank), pos))
        concepts.append(np.arange(len(bank)))
    if not rows:
        return [[[] for _ in bank] for bank in banks]
    all_rows = np.concatenate(rows).astype(np.float32)
    all_owner = np.concatenate(owners)
    all_concept = np.concatenate(concepts)
    result: list[list[list[Neighbour]]] = []
    for pos, bank in enumerate(banks):
        if not usable[pos]:
            result.append([[] for _ in range(len(bank))])
            continue
        mine = all_rows[all_owner == pos]
        sims = mine @ all_rows.T
        sims[:, all_owner == pos] = -np.inf
        per_concept: list[list[Neighbour]] = []
        n_other = int((all_owner != pos).sum())
        take = min(k, n_other)
        for i in range(len(mine)):
            if take == 0:
                per_concept.append([])
                continue
            idx = np.argpartition(-sims[i], take - 1)[:take]
            idx = idx[np.argsort(-sims[i, idx], kind="stable")]
            per_concept.append([Neighbour(int(all_owner[j]), int(all_concept[j]), float(sims[i, j]))
                                for j in idx])
        result.append(per_concept)
    return result


def embed_2d(features: np.ndarray) -> np.ndarray:
    """2-D coordinates of images from their concept importances (PCA of the centred rows),
    each axis scaled to [0, 1]. Fewer than 3 images, or no spread, give a line or a point."""
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros((0, 2))
    x = x - x.mean(axis=0, keepdims=True)
    if n >= 2 and np.abs(x).max() > 0:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        coords = x @ vt[:2].T
        # make the sign deterministic: largest loading of each axis positive
        for a in range(coords.shape[1]):
            if vt[a, np.argmax(np.abs(vt[a]))] < 0:
                coords[:, a] *= -1
    else:
        coords = np.zeros((n, 2))
    if coords.shape[1] < 2:
        coords = np.concatenate([coords, np.zeros((n, 2 - coords.shape[1]))], axis=1)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    out = (coords - lo) / span
    out[:, hi - lo <= 0] = 0.5
    return out


def unit_rows(bank: np.ndarray) -> np.ndarray:
    """The concept vectors scaled to length 1 (a zero vector stays zero)."""
    bank = np.asarray(bank, dtype=np.float64)
    norms = np.linalg.norm(bank, axis=1, keepdims=True)
    return bank / np.where(norms > 0, norms, 1.0)


def within_class_similarity(bank: np.ndarray) -> np.ndarray:
    """(r, r) cosine similarity between the concepts of one class (1 on the diagonal for non-zero concepts)."""
    unit = unit_rows(bank)
    return np.clip(unit @ unit.T, -1.0, 1.0)
