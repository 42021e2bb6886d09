"""The visualisations of one bank of atoms (arrays in, arrays out): what the stage writes for a class.

:func:`visualize_bank` takes any bank (the class's concepts, or a dataset-wide dictionary: one image per atom), the
estimator that turns an activation into the bank's coefficients (to check that an image excites its own atom), and
the coefficients of real rows to compare with; :func:`photo_spectrum` estimates the fixed magnitude spectrum on
photos.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ClassSkipped
from .maco import Maco, evaluate
from .objectives import Target
from .spectrum import Spectrum, estimate_spectrum


def spread(n_available: int, n_wanted: int) -> np.ndarray:
    """``min(n_available, n_wanted)`` indices spread evenly over ``range(n_available)``."""
    n = min(int(n_available), int(n_wanted))
    if n <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n_available - 1, n).round().astype(np.int64))


def photo_spectrum(paths: Sequence[str], preprocessing, n_images: int = 64) -> Spectrum:
    """The spectrum and colour statistics of up to ``n_images`` of ``paths`` (evenly spread), seen as the model sees
    them (resized and centre-cropped to its input). Unreadable files are left out."""
    from ..datasets.images import load_image

    views = []
    for index in spread(len(paths), max(1, n_images) * 2):  # twice as many candidates, for unreadable files
        if len(views) >= n_images:
            break
        try:
            image, _ = load_image(paths[index])
        except Exception:  # noqa: BLE001 - a photo that cannot be read is skipped, as in extraction
            continue
        views.append(preprocessing.to_tensor(image).numpy())
    if not views:
        raise ClassSkipped(f"none of the class's photos can be read to estimate the spectrum (e.g. {paths[0]}); "
                           "the spectrum's colours and energy come from them")
    return estimate_spectrum(np.stack(views), source="images")


@dataclass
class BankVisualisations:
    """What :func:`visualize_bank` returns (the arrays of the fviz artefact)."""

    targets: list[Target]
    images: np.ndarray  # (n, S, S, 3) uint8
    transparency: np.ndarray  # (n, S, S) float32
    objective: np.ndarray  # (n,)
    curve: np.ndarray  # (n, steps)
    coefficients: np.ndarray  # (n, r)
    percentile: np.ndarray  # (n,) NaN for non-concept targets
    logit: np.ndarray  # (n,)
    p99: np.ndarray  # (r,)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def excited(self) -> np.ndarray:
        """(r,) bool: concept k's image has its own coefficient above the reference 99th percentile and as the
        argmax of its coefficients."""
        out = np.zeros(len(self.p99), bool)
        for row, target in enumerate(self.targets):
            if target.kind == "concept":
                k = target.index
                out[k] = bool(self.coefficients[row, k] > self.p99[k] and np.argmax(self.coefficients[row]) == k)
        return out


def visualize_bank(split, components: np.ndarray, transform: Callable[[np.ndarray], np.ndarray],
                   reference: np.ndarray, preprocessing, spectrum: Spectrum, maco: Maco, *,
                   class_index: int | None = None, logit_target: bool = True,
                   concepts: Sequence[int] | None = None, key: str = "", progress=None) -> BankVisualisations:
    """One MACO image per atom of ``components`` (r, D) (or of the atoms ``concepts``) and, with ``class_index``
    and ``logit_target``, one for that logit (every image's ``class_index`` logit is measured).

    ``transform`` maps pooled activations (n, D) to the bank's coefficients (n, r); ``reference`` (R, r) are the
    coefficients of real rows, the yardstick of the percentile check.
    """
    components = np.asarray(components, np.float32)
    reference = np.asarray(reference, np.float32)
    r = components.shape[0]
    targets = [Target("concept", int(k)) for k in (range(r) if concepts is None else concepts)]
    if class_index is not None and logit_target:
        targets.append(Target("logit", int(class_index)))
    result = maco.visualize(split, targets, components, spectrum, preprocessing, key=key, progress=progress)
    objective = maco.objective(split, targets, components, preprocessing)
    measured = evaluate(objective, result.images, maco.eval_scale, int(preprocessing.input_size),
                        class_index=class_index, batch=max(8, int(maco.batch) * int(maco.crops)))
    coefficients = np.asarray(transform(measured.pooled), np.float32).reshape(len(targets), r)
    percentile = np.full(len(targets), np.nan, np.float32)
    if len(reference):
        for row, target in enumerate(targets):
            if target.kind == "concept":
                percentile[row] = 100.0 * float((reference[:, target.index] < coefficients[row, target.index]).mean())
        p99 = np.percentile(reference, 99, axis=0).astype(np.float32)
    else:
        p99 = np.full(r, np.nan, np.float32)
    logit = measured.logit if measured.logit is not None else np.full(len(targets), np.nan, np.float32)
    return BankVisualisations(
        targets=targets, images=result.images, transparency=result.transparency, objective=measured.score,
        curve=result.curve, coefficients=coefficients, percentile=percentile, logit=np.asarray(logit, np.float32),
        p99=p99, seconds=result.seconds, info={"eval_scale": measured.scale, "eval_crops": measured.n_crops})
