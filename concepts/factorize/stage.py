"""Stage 2: a concept dictionary per class, ``RUN/activations/<class>.h5 -> RUN/concepts/<class>.h5``.

For each class, the estimator is fitted on the class's cached rows and every row gets its coefficients.
The file holds ``components`` (r, D) float32 (the bank, concepts ordered by total coefficient mass),
``coefficients`` (R, r) float32 (U of every cached row, in row order), ``state/*`` (what
:func:`load_concepts` needs to rebuild the estimator: e.g. PCA's mean), and the attributes
``method, params, n_concepts, seed, rel_error, sparsity_l0, hoyer, dead, dead_concepts, n_iter,
converged, seconds, n_rows, n_fit_rows, fit_rows, config, config_hash, source_config_hash`` plus the
provenance copied from the activations file.

Data larger than memory: a class with more than ``max_rows`` rows is fitted on a uniform sample of
``max_rows`` rows without replacement (an exact solver on a sample; ``fit_rows='sample'`` records it);
the coefficients of *every* row, the relative error and the other diagnostics are then computed by
streaming the cache in chunks of ``chunk_rows`` rows, so memory holds ``max_rows`` rows, not the class.

Same rules as extraction: files are written to ``*.tmp`` and renamed when complete, a finished class is
skipped on rerun, and a class finished with other settings is refused unless ``overwrite``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..artefacts import (atomic_h5, base_attributes, config_hash, existing_status, read_attrs, stage_path,
                         write_attrs)
from ..errors import ConceptsError
from .registry import METHODS, canonical_method, make_estimator

#: attributes of the activations file that are not provenance (they describe that stage itself)
_NOT_PROVENANCE = {"stage", "config", "config_hash", "created", "package", "package_version"}
#: estimator parameters that describe where it runs, not what it computes (kept out of the config hash)
_RUNTIME_PARAMS = {"device", "verbose"}
ZERO_TOL = 1e-8


def _json_params(params: dict) -> dict:
    out = {}
    for key, value in sorted(params.items()):
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


class _Diagnostics:
    """Streaming relative error, l0 sparsity, Hoyer sparsity and dead concepts over row chunks."""

    def __init__(self, r: int, scale: float):
        self.r = r
        self.thresh = ZERO_TOL * max(scale, 1e-300)
        self.err2 = 0.0
        self.norm2 = 0.0
        self.zeros = 0
        self.count = 0
        self.hoyer_sum = 0.0
        self.hoyer_rows = 0
        self.colmax = np.zeros(r)

    def add(self, A: np.ndarray, U: np.ndarray, recon: np.ndarray) -> None:
        A64 = A.astype(np.float64)
        self.err2 += float(np.square(A64 - recon).sum())
        self.norm2 += float(np.square(A64).sum())
        absU = np.abs(U.astype(np.float64))
        self.zeros += int((absU <= self.thresh).sum())
        self.count += absU.size
        self.colmax = np.maximum(self.colmax, absU.max(axis=0) if len(absU) else 0)
        if self.r >= 2:
            l1 = absU.sum(1)
            l2 = np.sqrt(np.square(absU).sum(1))
            keep = l2 > 0
            sq = np.sqrt(self.r)
            self.hoyer_sum += float(((sq - l1[keep] / l2[keep]) / (sq - 1)).sum())
            self.hoyer_rows += int(keep.sum())

    def result(self, W: np.ndarray) -> dict:
        norms = np.linalg.norm(W, axis=1)
        dead = (self.colmax <= self.thresh) | (norms <= ZERO_TOL * max(norms.max(initial=0.0), 1e-300))
        return {
            "rel_error": float(np.sqrt(self.err2 / self.norm2)) if self.norm2 > 0 else 0.0,
            "sparsity_l0": float(self.zeros / self.count) if self.count else 0.0,
            "hoyer": (float(self.hoyer_sum / self.hoyer_rows) if self.hoyer_rows else 0.0) if self.r >= 2 else 1.0,
            "dead": int(dead.sum()),
            "dead_concepts": np.flatnonzero(dead).tolist(),
        }


def _check_finite(block: np.ndarray, path: Path, offset: int) -> None:
    bad = ~np.isfinite(block)
    if bad.any():
        row = offset + int(np.flatnonzero(bad.any(axis=1))[0])
        raise ConceptsError(f"{path}: the cached activations contain NaN or inf (first at row {row}); "
                            "re-extract this class")


def factorize_class(run, class_id: str, *, method: str = "nmf", n_concepts: int = 10, seed: int = 0,
                    device=None, overwrite: bool = False, max_rows: int = 200_000, chunk_rows: int = 65536,
                    **params) -> Path:
    """Fit the concept bank of one class and write ``RUN/concepts/<class>.h5``; returns its path."""
    from ..extract.cache import open_activations

    run = Path(run)
    method = canonical_method(method)
    estimator = make_estimator(method, int(n_concepts), random_state=int(seed), device=device, **params)
    est_params = {k: v for k, v in estimator.get_params().items() if k not in _RUNTIME_PARAMS}
    act_path = stage_path(run, "extract", class_id)
    start = time.perf_counter()
    with open_activations(run, class_id) as cache:
        act_attrs = dict(cache.attrs)
        settings = {"method": method, "n_concepts": int(n_concepts), "seed": int(seed),
                    "params": _json_params(est_params), "max_rows": int(max_rows)}
        source_hash = act_attrs.get("config_hash")
        wanted = config_hash(dict(settings, source_config_hash=source_hash))
        out = stage_path(run, "factorize", class_id)
        if existing_status(out, wanted, overwrite) == "done":
            return out
        n_rows = int(cache.n_rows)
        if n_rows == 0:
            raise ConceptsError(f"{act_path}: no cached rows to factorize (every image was skipped?)")
        sampled = n_rows > max_rows
        A = cache.sample_rows(int(max_rows), seed=int(seed)) if sampled else cache.rows(np.float32)
        _check_finite(A, act_path, 0)
        try:
            U_fit = estimator.fit_transform(A)
        except ConceptsError as exc:
            raise ConceptsError(f"{act_path.name}: {exc}") from exc
        W = np.asarray(estimator.components_, dtype=np.float32)
        r = W.shape[0]
        diag = _Diagnostics(r, float(np.abs(U_fit).max(initial=0.0)))
        with atomic_h5(out) as handle:
            handle.create_dataset("components", data=W)
            coef = handle.create_dataset("coefficients", shape=(n_rows, r), dtype=np.float32,
                                         chunks=(min(n_rows, max(1, 2 ** 20 // max(r, 1))), r))
            if sampled:
                del A, U_fit
                offset = 0
                for block in cache.iter_rows(chunk_rows=int(chunk_rows), dtype=np.float32):
                    _check_finite(block, act_path, offset)
                    U = np.asarray(estimator.transform(block), dtype=np.float32)
                    coef[offset:offset + len(block)] = U
                    diag.add(block, U, np.asarray(estimator.inverse_transform(U), dtype=np.float64))
                    offset += len(block)
            else:
                U_fit = np.asarray(U_fit, dtype=np.float32)
                coef[...] = U_fit
                for lo in range(0, n_rows, int(chunk_rows)):
                    U = U_fit[lo:lo + int(chunk_rows)]
                    diag.add(A[lo:lo + len(U)], U, np.asarray(estimator.inverse_transform(U), dtype=np.float64))
            state = handle.create_group("state")
            for name, value in estimator.state_arrays().items():
                state.create_dataset(name, data=np.asarray(value))
            attrs = {k: v for k, v in act_attrs.items() if k not in _NOT_PROVENANCE}
            attrs.update(base_attributes())
            attrs.update(diag.result(W))
            attrs.update({
                "stage": "factorize", "method": method, "params": settings["params"], "n_concepts": r,
                "seed": int(seed), "n_iter": int(estimator.n_iter_), "converged": bool(estimator.converged_),
                "fit_rel_error": float(estimator.reconstruction_err_),
                "n_rows": n_rows, "n_fit_rows": int(min(n_rows, max_rows)),
                "fit_rows": "sample" if sampled else "all", "device": str(estimator.device_),
                "ordering": "total coefficient mass" if method != "pca" else "explained variance",
                "config": settings, "config_hash": wanted, "source_config_hash": source_hash,
            })
            attrs["seconds"] = time.perf_counter() - start
            write_attrs(handle, attrs)
    return out


def factorize_run(run, *, method: str = "nmf", n_concepts: int = 10, seed: int = 0, classes=None, device=None,
                  overwrite: bool = False, progress: bool = True, max_rows: int = 200_000, chunk_rows: int = 65536,
                  **params) -> list[Path]:
    """Stage 2 for every class of ``run`` (or ``classes``): writes ``RUN/concepts/<class>.h5``.

    ``method`` is a key of :data:`concepts.factorize.METHODS`; ``params`` go to the estimator
    (e.g. ``solver='mu'`` for NMF).  Finished classes are skipped; returns the paths in class order.
    """
    from ..extract.cache import list_classes

    run = Path(run)
    method = canonical_method(method)
    make_estimator(method, int(n_concepts), random_state=int(seed), device=device, **params)  # validate early
    available = list_classes(run, stage="extract")
    if classes is None:
        wanted = available
    else:
        wanted = [str(c) for c in classes]
        missing = [c for c in wanted if c not in available]
        if missing:
            raise ConceptsError(f"no activations for class(es) {', '.join(missing)} in {run} "
                                "(run `concepts extract` first)")
    if not wanted:
        raise ConceptsError(f"no activations in {run / 'activations'} (run `concepts extract` first)")
    paths = []
    for class_id in tqdm(wanted, desc=f"factorize ({method}, r={n_concepts})", unit="class", disable=not progress):
        paths.append(factorize_class(run, class_id, method=method, n_concepts=n_concepts, seed=seed, device=device,
                                     overwrite=overwrite, max_rows=max_rows, chunk_rows=chunk_rows, **params))
    return paths


def load_concepts(run, class_id: str, *, device=None, coefficients: bool = False):
    """The fitted estimator of a class, rebuilt from ``RUN/concepts/<class>.h5``.

    ``transform(A)`` gives the coefficients of new rows and ``components_`` is the bank; ``.attrs``
    holds the file's attributes (diagnostics, provenance), ``.path`` the file.  With
    ``coefficients=True``, ``.coefficients_`` holds the stored U of every cached row.
    """
    import h5py

    path = stage_path(run, "factorize", class_id)
    if not path.is_file():
        raise ConceptsError(f"no concepts for class {class_id!r} in {run} (run `concepts factorize` first)")
    try:
        with h5py.File(path, "r") as handle:
            attrs = read_attrs(handle)
            components = np.asarray(handle["components"][()], dtype=np.float32)
            state = {k: v[()] for k, v in handle["state"].items()} if "state" in handle else {}
            coef = np.asarray(handle["coefficients"][()], dtype=np.float32) if coefficients else None
    except (OSError, KeyError) as exc:
        raise ConceptsError(f"{path} is incomplete or unreadable ({exc}); rerun `concepts factorize --overwrite`") \
            from exc
    method = canonical_method(attrs.get("method", "nmf"))
    params = attrs.get("params") or {}
    if isinstance(params, str):
        params = json.loads(params)
    params = {k: v for k, v in params.items() if k in METHODS[method]._get_param_names()}
    params.pop("n_components", None)
    estimator = make_estimator(method, int(attrs.get("n_concepts", components.shape[0])), device=device, **params)
    estimator.load_state(components, state, info={
        "n_iter_": attrs.get("n_iter"), "converged_": attrs.get("converged"),
        "reconstruction_err_": attrs.get("fit_rel_error")})
    estimator.attrs = attrs
    estimator.path = path
    if coef is not None:
        estimator.coefficients_ = coef
    return estimator
