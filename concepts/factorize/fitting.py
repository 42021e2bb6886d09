"""Stage 2, the computation: fit one class's concept bank and stream every row's coefficients to the writer.

A class with more than ``max_rows`` rows is fitted on a uniform sample of ``max_rows`` rows without replacement (an
exact solver on a sample); the coefficients of *every* row and the diagnostics are then computed by streaming the
cache in chunks of ``chunk_rows`` rows, so memory holds ``max_rows`` rows, not the class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ClassSkipped, ConceptsError, DataError
from ..schema import ActivationCache, ConceptsWriter
from .metrics import StreamingDiagnostics


@dataclass
class FitResult:
    components: np.ndarray
    diagnostics: dict[str, Any]
    n_rows: int
    n_fit_rows: int
    sampled: bool


def check_finite(block: np.ndarray, cache: ActivationCache, offset: int) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        row = offset + int(np.flatnonzero(bad.any(axis=1))[0])
        raise ConceptsError(f"{cache.path}: the cached activations contain NaN or inf (first at row {row}); "
                            "re-extract this class with `concepts extract --overwrite`")


def fit_rows(estimator, A: np.ndarray, cache: ActivationCache) -> np.ndarray:
    """``estimator.fit_transform(A)``. Data the method cannot factorise as asked (fewer rows than concepts,
    constant rows) skips the class with the method's reason; the method's other refusals name the class file."""
    try:
        U = np.asarray(estimator.fit_transform(A), dtype=np.float32)
    except DataError as exc:
        raise ClassSkipped(f"{exc} ({len(A)} rows)") from exc
    except ConceptsError as exc:
        raise type(exc)(f"{cache.path.name}: {exc}") from exc
    if not (np.isfinite(U).all() and np.isfinite(estimator.components_).all()):
        raise ClassSkipped(f"{estimator.method} gave non-finite concepts on these {len(A)} rows")
    return U


def fit_class(cache: ActivationCache, estimator, writer: ConceptsWriter, *, max_rows: int, chunk_rows: int,
              seed: int) -> FitResult:
    """Fit ``estimator`` on the rows of ``cache`` and write the bank, every row's coefficients and the coefficients
    of every image's pooled row to ``writer``."""
    n_rows = int(cache.n_rows)
    if n_rows == 0:
        raise ClassSkipped("no cached rows to factorize (every image was skipped?)")
    sampled = n_rows > max_rows
    A = cache.sample_rows(int(max_rows), seed=int(seed)) if sampled else cache.rows(np.float32)
    check_finite(A, cache, 0)
    U_fit = fit_rows(estimator, A, cache)
    W = np.asarray(estimator.components_, dtype=np.float32)
    diagnostics = StreamingDiagnostics(W.shape[0], float(np.abs(U_fit).max(initial=0.0)))
    writer.write_components(W)
    if sampled:
        del A, U_fit
        offset = 0
        for block in cache.iter_rows(chunk_rows=int(chunk_rows), dtype=np.float32):
            check_finite(block, cache, offset)
            U = np.asarray(estimator.transform(block), dtype=np.float32)
            writer.write_coefficients(offset, U)
            diagnostics.add(block, U, np.asarray(estimator.inverse_transform(U), dtype=np.float64))
            offset += len(block)
    else:
        writer.write_coefficients(0, U_fit)
        for lo in range(0, n_rows, int(chunk_rows)):
            U = U_fit[lo:lo + int(chunk_rows)]
            diagnostics.add(A[lo:lo + len(U)], U, np.asarray(estimator.inverse_transform(U), dtype=np.float64))
    images = np.full((cache.n_images, W.shape[0]), np.nan, np.float32)
    if len(cache.kept):
        pooled = cache.pooled()
        check_finite(pooled, cache, 0)
        images[cache.kept] = np.asarray(estimator.transform(pooled), dtype=np.float32)
    writer.write_image_coefficients(images)
    return FitResult(W, diagnostics.result(W), n_rows, int(min(n_rows, max_rows)), sampled)
