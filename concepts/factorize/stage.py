"""Stage 2, orchestration: ``RUN/activations/<class>.h5 -> RUN/concepts/<class>.h5`` for every class, and
:func:`load_concepts`, which rebuilds a class's fitted estimator from its file.

Settings: the ``factorize`` section (:class:`~concepts.settings.FactorizeSettings`). The file layout is the schema's
(:data:`concepts.schema.CONCEPTS`). A concepts file whose activations were re-extracted since is stale and is
recomputed on the next run; one made with other settings is refused unless ``overwrite``.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClassSkipped, ConceptsError
from ..runner import ClassJob, StageReport, run_classes, say
from ..runtime import thread_limit, work_threads
from ..schema import ConceptsWriter, RunFolder, config_hash, identity_attributes, stage_path
from ..schema.lineage import Wanted, input_record
from ..settings import RunConfig, stage_config
from ..text import plural
from .fitting import fit_class
from .registry import METHODS, canonical_method, make_estimator

#: attributes of the activations file that are not provenance (they describe that stage itself)
_NOT_PROVENANCE = {"stage", "config", "config_hash", "created", "package", "package_version", "format_version",
                   "creation_id", "inputs"}
#: estimator parameters that describe where it runs, not what it computes (kept out of the config hash)
RUNTIME_PARAMS = {"device", "verbose"}


def _json_params(params: dict) -> dict:
    out = {}
    for key, value in sorted(params.items()):
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def build_estimator(cfg: RunConfig):
    """The estimator the settings ask for (its parameters checked now, before any work)."""
    device = None if cfg.model.device == "auto" else cfg.model.device
    f = cfg.factorize
    return make_estimator(f.method, f.n_concepts, random_state=f.seed, device=device, **f.estimator_params())


#: settings that only matter at dataset scope (left out of a class-scope file's hash)
DATASET_ONLY = ("concepts_per_class", "buffer_rows")


def dictionary_config(cfg: RunConfig) -> dict[str, Any]:
    """The settings that decide a dictionary's content (a bank, or the shared dictionary at dataset scope)."""
    estimator = build_estimator(cfg)
    params = {k: v for k, v in estimator.get_params().items() if k not in RUNTIME_PARAMS}
    settings = {k: v for k, v in cfg.factorize.hashed().items() if k not in ("concepts_per_class", "scope")}
    return {**settings, "method": canonical_method(cfg.factorize.method), "params": _json_params(params)}


def wanted_config(cfg: RunConfig) -> dict[str, Any]:
    """The settings that decide a concepts file's content (hashed into its config hash)."""
    if cfg.factorize.scope == "dataset":
        return {"stage": "factorize", "scope": "dataset", "concepts_per_class": cfg.factorize.concepts_per_class}
    config = {k: v for k, v in dictionary_config(cfg).items() if k not in DATASET_ONLY}
    return {"stage": "factorize", **config}


def factorize_run(run: str | os.PathLike, *, config: RunConfig | None = None, overwrite: bool = False,
                  progress: bool = True, **settings: Any) -> StageReport:
    """Stage 2 for every class of ``run`` (or ``classes``): writes ``RUN/concepts/<class>.h5``.

    ``settings`` are keywords of the ``factorize`` section (``method``, ``n_concepts``, ``seed``, ``max_iter``,
    ``params`` ...), ``classes``, ``device`` and ``threads``; any other keyword is a parameter of the method
    (e.g. ``solver='mu'`` for NMF). Returns the :class:`~concepts.runner.StageReport` (a sequence of the files).
    """
    from ..settings.run import keyword_map

    extra = {k: settings.pop(k) for k in list(settings) if k not in keyword_map("factorize")}
    cfg = stage_config("factorize", config, **settings)
    if extra:
        cfg = cfg.replace(**{"factorize.params": {**cfg.factorize.params, **extra}})
    build_estimator(cfg)  # bad parameters fail before anything is read
    folder = RunFolder(run)
    if cfg.factorize.scope == "dataset":
        from .shared import shared_run

        return shared_run(folder, cfg, overwrite=overwrite, progress=progress)
    available = folder.classes("extract")
    wanted_classes = list(cfg.data.classes) if cfg.data.classes else available
    missing = [c for c in wanted_classes if c not in available]
    if missing:
        raise ConceptsError(f"no activations for class(es) {', '.join(missing)} in {run} "
                            "(run `concepts extract` first)")
    if not wanted_classes:
        raise ConceptsError(f"no activations in {folder.path / 'activations'} (run `concepts extract` first)")
    unconverged: list[str] = []
    jobs = [_job(folder, cfg, class_id, progress, unconverged) for class_id in wanted_classes]
    with thread_limit(cfg.executor.threads):
        report = run_classes("factorize", jobs, overwrite=overwrite, progress=progress,
                             desc=f"factorize ({cfg.factorize.method}, r={cfg.factorize.n_concepts})")
    if len(unconverged) > 1:
        say(f"warning: factorize: {len(unconverged)} of {plural(len(report.written), 'class')} written stopped at "
            f"the iteration limit before converging ({', '.join(unconverged[:5])}"
            f"{' ...' if len(unconverged) > 5 else ''}); raise --max-iter", progress)
    return report


def factorize_class(run: str | os.PathLike, class_id: str, **settings: Any) -> Path:
    """Stage 2 for one class; returns its file (a ClassSkipped error says why a class could not be factorised)."""
    report = factorize_run(run, classes=[class_id], progress=False, **settings)
    if class_id in report.skipped:
        raise ClassSkipped(report.skipped[class_id])
    return stage_path(run, "factorize", class_id)


def check_class(cache, cfg: RunConfig, class_id: str, progress: bool) -> None:
    """Warn before fitting when the class has fewer usable images than concepts asked for."""
    kept, r = len(cache.kept), int(cfg.factorize.n_concepts)
    if 0 < kept < r:
        say(f"warning: factorize: class {class_id!r} has {plural(kept, 'usable image')} for {r} concepts: its "
            f"concepts will mostly describe single images (ask for fewer concepts, --concepts, or add images)",
            progress)


def check_fit(estimator, cfg: RunConfig, class_id: str, progress: bool, unconverged: list[str]) -> None:
    """Warn when the solver stopped at its iteration limit (its error may still have been falling)."""
    if getattr(estimator, "converged_", True) is False:
        unconverged.append(class_id)
        limit = getattr(estimator, "max_iter", None)
        say(f"warning: factorize: class {class_id!r}: {cfg.factorize.method} stopped after "
            f"{plural(getattr(estimator, 'n_iter_', 0), 'iteration')}"
            f"{f' (max_iter {limit})' if limit else ''} before converging (relative error "
            f"{float(getattr(estimator, 'reconstruction_err_', float('nan'))):.4f}); raise --max-iter", progress)


def _job(folder: RunFolder, cfg: RunConfig, class_id: str, progress: bool = True,
         unconverged: list[str] | None = None) -> ClassJob:
    path = folder.file("factorize", class_id)

    def wanted() -> Wanted:
        with folder.activations(class_id) as cache:
            source = dict(cache.attrs)
        config = wanted_config(cfg)
        return Wanted(config, config_hash(config), {"extract": input_record(source)})

    def work(wanted: Wanted) -> None:
        start = time.perf_counter()
        estimator = build_estimator(cfg)
        with folder.activations(class_id) as cache, \
                work_threads(float(min(cache.n_rows, cfg.factorize.max_rows)) * cache.n_channels * cfg.factorize.n_concepts
                             if str(estimator.device_) == "cpu" else math.inf):  # fit and diagnostics (runtime)
            source = dict(cache.attrs)
            check_class(cache, cfg, class_id, progress)
            with ConceptsWriter(path, n_rows=cache.n_rows, n_concepts=cfg.factorize.n_concepts) as writer:
                fit = fit_class(cache, estimator, writer, max_rows=cfg.factorize.max_rows,
                                chunk_rows=cfg.factorize.chunk_rows, seed=cfg.factorize.seed)
                check_fit(estimator, cfg, class_id, progress, unconverged if unconverged is not None else [])
                attrs = {k: v for k, v in source.items() if k not in _NOT_PROVENANCE}
                attrs.update(identity_attributes("factorize"), **wanted.attributes(), **fit.diagnostics)
                attrs.update(method=wanted.config["method"], params=wanted.config["params"],
                             n_concepts=int(fit.components.shape[0]), seed=int(cfg.factorize.seed),
                             n_iter=int(estimator.n_iter_), converged=bool(estimator.converged_),
                             fit_rel_error=float(estimator.reconstruction_err_), n_rows=fit.n_rows,
                             n_fit_rows=fit.n_fit_rows, fit_rows="sample" if fit.sampled else "all",
                             device=str(estimator.device_), source_config_hash=source.get("config_hash"),
                             ordering="explained variance" if wanted.config["method"] == "pca"
                             else "total coefficient mass", seconds=time.perf_counter() - start)
                writer.finish(state=estimator.state_arrays(), attrs=attrs)

    return ClassJob(class_id, path, wanted, work)


def load_concepts(run: str | os.PathLike, class_id: str, *, device=None, coefficients: bool = False):
    """The fitted estimator of a class, rebuilt from ``RUN/concepts/<class>.h5``.

    ``transform(A)`` gives the coefficients of new rows and ``components_`` is the bank; ``.attrs`` holds the
    file's attributes (diagnostics, provenance), ``.path`` the file. With ``coefficients=True``,
    ``.coefficients_`` holds the stored U of every cached row.
    """
    record = RunFolder(run).concepts(class_id, coefficients=coefficients)
    return estimator_from_record(record, device=device)


def estimator_from_record(record, device=None):
    """The fitted estimator of a :class:`~concepts.schema.ConceptsRecord` (a dataset-scope class view: the shared
    dictionary's estimator restricted to the class's atoms)."""
    attrs = record.attrs
    if attrs.get("scope") == "dataset":
        from .shared import view_from_record

        return view_from_record(record, device=device)
    method = canonical_method(attrs.get("method", "nmf"))
    params = attrs.get("params") or {}
    if isinstance(params, str):
        params = json.loads(params)
    accepted = METHODS[method]._get_param_names()
    params = {k: v for k, v in params.items() if k in accepted and k not in ("n_components", "device")}
    estimator = make_estimator(method, int(attrs.get("n_concepts", record.n_concepts)), device=device, **params)
    estimator.load_state(record.components, record.state, info={
        "n_iter_": attrs.get("n_iter"), "converged_": attrs.get("converged"),
        "reconstruction_err_": attrs.get("fit_rel_error")})
    estimator.attrs = attrs
    estimator.path = record.path
    if record.coefficients is not None:
        estimator.coefficients_ = record.coefficients
    return estimator
