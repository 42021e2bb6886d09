"""The scoring of a vocabulary against concept embeddings (arrays in, arrays out)."""
from __future__ import annotations

import numpy as np

EPS = 1e-8


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > EPS)


def score_words(concepts: np.ndarray, class_mean: np.ndarray, words: np.ndarray) -> np.ndarray:
    """(r, V) cosines of the centred concept embeddings (r, E) and the centred word embeddings (V, E).

    Concepts are centred on ``class_mean`` (E,), words on their own mean; a concept equal to the class mean (a class
    with one concept) is compared uncentred.
    """
    c = _unit(concepts)
    centred = c - _unit(class_mean)[None]
    flat = np.linalg.norm(centred, axis=1) < 1e-6
    centred[flat] = c[flat]
    w = _unit(words)
    return _unit(centred) @ _unit(w - w.mean(axis=0, keepdims=True)).T


def top_words(scores: np.ndarray, words: list[str], k: int) -> list[list[tuple[str, float]]]:
    """The ``k`` best (word, score) pairs of every row of ``scores``, best first (ties: vocabulary order)."""
    out = []
    for row in np.asarray(scores):
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(words[i], float(row[i])) for i in order])
    return out
