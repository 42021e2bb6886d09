"""The probe's computation: pooled features from cached activations, a held-out split, a logistic regression."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConceptsError


def pooled_features(split, cache, batch_size: int = 32) -> np.ndarray:
    """(n_kept, D) pooled features of a class's mapped images: ``split.h`` of their cached activations, where
    ``split`` has no classifier (its ``h`` ends at the pooled features)."""
    out = []
    for start in range(0, len(cache.mapped), batch_size):
        idx = cache.mapped[start:start + batch_size]
        pos = torch.from_numpy(cache.maps(idx)).to(split.device)
        prefix = cache.prefix(idx)
        prefix = None if prefix is None else torch.from_numpy(prefix).to(split.device)
        with torch.no_grad():
            out.append(split.h_positions(pos, prefix).float().cpu().numpy())
    width = out[0].shape[1] if out else 0
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def holdout_split(n: int, share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of ``n`` images: ``round(share * n)`` held out, at least one when ``n >= 2``, and at
    least one left to fit on."""
    order = rng.permutation(n)
    n_test = min(max(int(round(share * n)), 1 if n >= 2 else 0), max(n - 1, 0))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@dataclass
class ProbeFit:
    weight: np.ndarray  # (C, D) on the raw pooled features
    bias: np.ndarray  # (C,)
    accuracy: float  # on the held-out images (NaN when none)
    n_train: int
    n_test: int
    per_class: dict[str, dict] = field(default_factory=dict)


def fit_probe(features: dict[str, np.ndarray], *, holdout: float, regularization: float, max_iter: int,
              seed: int) -> ProbeFit:
    """A multinomial logistic regression on standardised features, folded back into one linear map of the raw
    features (``logits = x @ weight.T + bias``); two classes give the equivalent two-row softmax head."""
    from sklearn.linear_model import LogisticRegression

    classes = list(features)
    if len(classes) < 2:
        raise ConceptsError(f"a probe needs at least 2 classes; the run has {len(classes)}")
    parts = {"train": ([], []), "test": ([], [])}
    for label, class_id in enumerate(classes):
        train, test = holdout_split(len(features[class_id]), holdout, np.random.default_rng([seed, label]))
        for name, idx in (("train", train), ("test", test)):
            parts[name][0].append(features[class_id][idx])
            parts[name][1].append(np.full(len(idx), label))
    x_train, y_train = (np.concatenate(v) for v in parts["train"])
    x_test, y_test = (np.concatenate(v) for v in parts["test"])
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    model = LogisticRegression(C=regularization, max_iter=max_iter)
    model.fit((x_train - mean) / std, y_train)
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: p(1) = sigmoid(z) is the softmax of (-z/2, z/2)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = (coef / std).astype(np.float32)
    bias = (intercept - weight.astype(np.float64) @ mean).astype(np.float32)
    predicted = (x_test @ weight.T + bias).argmax(axis=1) if len(x_test) else np.zeros(0, int)
    per_class = {}
    for label, class_id in enumerate(classes):
        mine = y_test == label
        per_class[class_id] = {"n_train": int((y_train == label).sum()), "n_test": int(mine.sum()),
                               "accuracy": float((predicted[mine] == label).mean()) if mine.any() else None}
    accuracy = float((predicted == y_test).mean()) if len(y_test) else float("nan")
    return ProbeFit(weight, bias, accuracy, len(y_train), len(y_test), per_class)
