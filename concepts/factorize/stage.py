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
from ..schema import ConceptsWriter, RunFolder, config_hash, identity_attributes, read_concepts, stage_path
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
    return {"stage": "factorize", **config, **cfg.factorize.recursive_config()}


def factorize_run(run: str | os.PathLike, *, config: RunConfig | None = None, overwrite: bool = False,
                  progress: bool = True, warn: bool = True, **settings: Any) -> StageReport:
    """Stage 2 for every class of ``run`` (or ``classes``): writes ``RUN/concepts/<class>.h5``.

    ``settings`` are keywords of the ``factorize`` section (``method``, ``n_concepts``, ``seed``, ``max_iter``,
    ``params`` ...), ``classes``, ``device`` and ``threads``; any other keyword is a parameter of the method
    (e.g. ``solver='mu'`` for NMF). Returns the :class:`~concepts.runner.StageReport` (a sequence of the files);
    its ``warnings`` list the classes with fewer usable images than concepts and those whose solver stopped at its
    iteration limit. ``warn=False``: collect them there without printing them (``concepts run`` prints one summary
    line per kind for the whole run).
    """
    from ..settings.run import keyword_map

    extra = {k: settings.pop(k) for k in list(settings) if k not in keyword_map("factorize")}
    cfg = stage_config("factorize", config, **settings)
    if extra:
        cfg = cfg.replace(**{"factorize.params": {**cfg.factorize.params, **extra}})
    build_estimator(cfg)  # bad parameters fail before anything is read
    if cfg.factorize.scope == "dataset" and cfg.factorize.recursive:
        raise ConceptsError("--recursive splits the concepts of one class: it needs --scope class (a dataset-scope "
                            "dictionary's atoms are shared by every class)")
    reports = {}
    for layer in cfg.model.layers:
        folder = RunFolder(run, layer=layer)
        reports[layer or "main"] = _factorize_folder(folder, cfg, overwrite, progress, warn)
    report = next(iter(reports.values()))
    report.layers = dict(list(reports.items())[1:])
    return report


def _factorize_folder(folder: RunFolder, cfg: RunConfig, overwrite: bool, progress: bool,
                      warn: bool = True) -> StageReport:
    """Stage 2 for the classes of one layer's folder (one dictionary for them all at dataset scope)."""
    if cfg.factorize.scope == "dataset":
        from .shared import shared_run

        return shared_run(folder, cfg, overwrite=overwrite, progress=progress)
    wanted_classes = folder.input_classes("extract", cfg.data.classes)
    if not wanted_classes:
        raise ConceptsError(f"no activations in {folder.path / 'activations'} (run `concepts extract` first)")
    warnings: dict[str, dict[str, str]] = {}
    sub = folder.at_layer(cfg.factorize.sub_layer) if cfg.factorize.recursive and cfg.factorize.sub_layer else None
    sub = None if sub is not None and sub.path == folder.path else sub  # the concepts' own layer
    notes = ClassWarnings(warnings, progress if warn else None)
    jobs = [_job(folder, cfg, class_id, progress, notes, sub) for class_id in wanted_classes]
    with thread_limit(cfg.executor.threads):
        report = run_classes("factorize", jobs, overwrite=overwrite, progress=progress,
                             desc=f"factorize ({cfg.factorize.method}, r={cfg.factorize.n_concepts})")
    report.warnings = warnings
    unconverged = list(warnings.get("unconverged", {}))
    if warn and len(unconverged) > 1:
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


class ClassWarnings:
    """Where a stage's per-class warnings go: ``kind -> class -> detail`` (the report's ``warnings``), each also
    printed as it happens unless ``progress`` is None (collected only)."""

    def __init__(self, store: dict[str, dict[str, str]], progress: bool | None):
        self.store, self.progress = store, progress

    def add(self, kind: str, class_id: str, detail: str) -> None:
        self.store.setdefault(kind, {})[class_id] = detail
        if self.progress is not None:
            say(f"warning: factorize: class {class_id!r}{WARNING_TEXT[kind][1].format(detail=detail)}", self.progress)


# kind -> (what the classes have in common, the per-class line after the class's name, with its detail)
WARNING_TEXT = {
    "few_images": ("have fewer usable images than concepts: their concepts will mostly describe single images (ask "
                   "for fewer concepts, --concepts, or add images)",
                   " has {detail}: its concepts will mostly describe single images (ask for fewer concepts, "
                   "--concepts, or add images)"),
    "unconverged": ("stopped at the iteration limit before converging (raise --max-iter)", ": {detail}; raise --max-iter"),
}


def warning_summary(kind: str, details: dict[str, str]) -> str:
    """One line for every class of one kind of warning (as ``concepts run`` prints them)."""
    examples = "; ".join(f"{c}: {d}" for c, d in list(details.items())[:3]) + (" ..." if len(details) > 3 else "")
    return f"warning: factorize: {plural(len(details), 'class')} {WARNING_TEXT[kind][0]} ({examples})"


def check_class(cache, cfg: RunConfig, class_id: str, notes: ClassWarnings) -> None:
    """Note, before fitting, a class with fewer usable images than concepts asked for."""
    kept, r = len(cache.kept), int(cfg.factorize.n_concepts)
    if 0 < kept < r:
        notes.add("few_images", class_id, f"{plural(kept, 'usable image')} for {r} concepts")


def check_fit(estimator, cfg: RunConfig, class_id: str, notes: ClassWarnings) -> None:
    """Note a solver that stopped at its iteration limit (its error may still have been falling)."""
    if getattr(estimator, "converged_", True) is False:
        limit = getattr(estimator, "max_iter", None)
        notes.add("unconverged", class_id,
                  f"{cfg.factorize.method} stopped after {plural(getattr(estimator, 'n_iter_', 0), 'iteration')}"
                  f"{f' (max_iter {limit})' if limit else ''} before converging (relative error "
                  f"{float(getattr(estimator, 'reconstruction_err_', float('nan'))):.4f})")


def _job(folder: RunFolder, cfg: RunConfig, class_id: str, progress: bool = True,
         notes: ClassWarnings | None = None, sub: RunFolder | None = None) -> ClassJob:
    path = folder.file("factorize", class_id)
    notes = notes if notes is not None else ClassWarnings({}, progress)

    def wanted() -> Wanted:
        with folder.activations(class_id) as cache:
            source = dict(cache.attrs)
        config = wanted_config(cfg)
        inputs = {"extract": input_record(source)}
        if sub is not None:  # the sub-concepts' layer is an input too
            with sub.activations(class_id) as cache:
                inputs[f"extract:{cfg.factorize.sub_layer}"] = input_record(dict(cache.attrs))
        return Wanted(config, config_hash(config), inputs)

    def work(wanted: Wanted) -> None:
        start = time.perf_counter()
        reused = reusable_bank(path, wanted)
        estimator = build_estimator(cfg)
        with folder.activations(class_id) as cache, \
                work_threads(float(min(cache.n_rows, cfg.factorize.max_rows)) * cache.n_channels * cfg.factorize.n_concepts
                             if str(estimator.device_) == "cpu" else math.inf):  # fit and diagnostics (runtime)
            source = dict(cache.attrs)
            check_class(cache, cfg, class_id, notes)
            with ConceptsWriter(path, n_rows=cache.n_rows, n_concepts=cfg.factorize.n_concepts) as writer:
                if reused is None:
                    estimator, attrs = _fit(cfg, cache, writer, wanted, source, estimator)
                    check_fit(estimator, cfg, class_id, notes)
                else:
                    estimator, attrs = _reuse(reused, writer, wanted)
                if cfg.factorize.recursive:
                    tree = class_tree(cfg, cache, estimator, writer.coefficients(), sub, class_id)
                    writer.write_tree(tree)
                    attrs["tree_seconds"] = tree.attrs["seconds"]
                attrs["seconds"] = time.perf_counter() - start
                writer.finish(state=estimator.state_arrays(), attrs=attrs)

    return ClassJob(class_id, path, wanted, work)


def _fit(cfg: RunConfig, cache, writer: ConceptsWriter, wanted: Wanted, source: dict, estimator=None):
    """Fit the class's bank (written with every row's coefficients); returns the estimator and the attributes."""
    estimator = build_estimator(cfg) if estimator is None else estimator
    fit = fit_class(cache, estimator, writer, max_rows=cfg.factorize.max_rows, chunk_rows=cfg.factorize.chunk_rows,
                    seed=cfg.factorize.seed)
    attrs = {k: v for k, v in source.items() if k not in _NOT_PROVENANCE}
    attrs.update(identity_attributes("factorize"), **wanted.attributes(), **fit.diagnostics)
    attrs.update(method=wanted.config["method"], params=wanted.config["params"],
                 n_concepts=int(fit.components.shape[0]), seed=int(cfg.factorize.seed),
                 n_iter=int(estimator.n_iter_), converged=bool(estimator.converged_),
                 fit_rel_error=float(estimator.reconstruction_err_), n_rows=fit.n_rows,
                 n_fit_rows=fit.n_fit_rows, fit_rows="sample" if fit.sampled else "all",
                 device=str(estimator.device_), source_config_hash=source.get("config_hash"),
                 ordering="explained variance" if wanted.config["method"] == "pca"
                 else "total coefficient mass")
    return estimator, attrs


def reusable_bank(path: Path, wanted: Wanted):
    """The record of an existing concepts file that differs from ``wanted`` only in its recursive settings (same
    bank settings, same activations): its bank is what a new fit would give, so adding sub-concepts keeps it."""
    from ..schema.hdf5 import peek_attrs
    from ..settings.factorize import RECURSIVE

    if not path.exists():
        return None
    try:
        attrs = peek_attrs(path)
    except OSError:
        return None
    old = {k: v for k, v in (attrs.get("config") or {}).items() if k not in RECURSIVE}
    new = {k: v for k, v in wanted.config.items() if k not in RECURSIVE}
    same_input = (attrs.get("inputs") or {}).get("extract") == wanted.inputs.get("extract")
    if old != new or not same_input or int(attrs.get("format_version", 1)) < 2:
        return None
    return read_concepts(path)


def _reuse(record, writer: ConceptsWriter, wanted: Wanted):
    """Write the bank and coefficients of an existing file again; returns its estimator and attributes."""
    writer.write_components(record.components)
    writer.write_coefficients(0, record.coefficients)
    skip = set(_NOT_PROVENANCE) | {"tree_seconds"}
    attrs = {k: v for k, v in record.attrs.items() if k not in skip}
    attrs.update(identity_attributes("factorize"), **wanted.attributes(), bank_reused_from=record.attrs.get(
        "creation_id"))
    return estimator_from_record(record), attrs


def _aligned(cache, sub_cache) -> str | None:
    """Why the rows of two layers' caches of a class are not the same rows (None when they are)."""
    if cache.n_rows != sub_cache.n_rows:
        return f"{cache.n_rows} rows against {sub_cache.n_rows}"
    if cache.images["sha256"] != sub_cache.images["sha256"]:
        return "other images"
    if not (np.array_equal(cache.row_image, sub_cache.row_image) and np.array_equal(cache.row_box, sub_cache.row_box)):
        return "rows of other crops or positions"
    return None


def class_tree(cfg: RunConfig, cache, estimator, U: np.ndarray, sub: RunFolder | None, class_id: str):
    """The sub-concept tree of a class (at its own layer, or at the cached layer ``sub``)."""
    from .recursive import TreeSettings, grow_tree

    f = cfg.factorize
    settings = TreeSettings(depth=f.depth, sub_concepts=f.sub_concepts, percentile=f.threshold_percentile,
                            seed=f.seed, max_rows=f.max_rows)
    device = None if cfg.model.device == "auto" else cfg.model.device

    def make():
        return make_estimator(f.method, f.sub_concepts, random_state=f.seed, device=device, **f.estimator_params())

    source = cache
    if sub is not None:
        source = sub.activations(class_id)
        why = _aligned(cache, source)
        if why is not None:
            source.close()
            raise ConceptsError(
                f"--sub-layer {f.sub_layer}: its rows of class {class_id!r} are not those of layer "
                f"{cache.attrs.get('layer')} ({why}); sub-concepts at another layer need the same rows, i.e. crops "
                f"mode (in patches mode the grids {cache.grid} and {source.grid} differ)")
    try:
        everything = source.rows() if source.n_rows <= f.max_rows else None
        rows_of = (lambda idx: everything[idx]) if everything is not None else source.rows_at
        return grow_tree(U, estimator, rows_of, make, settings, same_layer=sub is None,
                         layer=str(source.attrs.get("layer", "")), method=canonical_method(f.method))
    finally:
        if source is not cache:
            source.close()


def load_concepts(run: str | os.PathLike, class_id: str, *, device=None, coefficients: bool = False):
    """The fitted estimator of a class, rebuilt from ``RUN/concepts/<class>.h5``.

    ``transform(A)`` gives the coefficients of new rows and ``components_`` is the bank; ``.attrs`` holds the
    file's attributes (diagnostics, provenance), ``.path`` the file. With ``coefficients=True``,
    ``.coefficients_`` holds the stored U of every cached row.
    """
    record = RunFolder(run).concepts(class_id, coefficients=coefficients)
    return estimator_from_record(record, device=device)


def _stored_params(attrs: dict, method: str) -> dict:
    params = attrs.get("params") or {}
    if isinstance(params, str):
        params = json.loads(params)
    accepted = METHODS[method]._get_param_names()
    return {k: v for k, v in params.items() if k in accepted and k not in ("n_components", "device")}


def subconcept_estimator(record, positions, device=None):
    """The fitted estimator of one group of sibling sub-concepts (``positions`` into the record's ``tree``, in
    sibling order), rebuilt from the concepts file."""
    tree = record.tree
    method = canonical_method(record.attrs.get("method", "nmf"))
    positions = np.asarray(positions)
    estimator = make_estimator(method, len(positions), device=device, **_stored_params(record.attrs, method))
    estimator.load_state(tree.components[positions], {k: v[positions[0]] for k, v in tree.state.items()})
    return estimator


def estimator_from_record(record, device=None):
    """The fitted estimator of a :class:`~concepts.schema.ConceptsRecord` (a dataset-scope class view: the shared
    dictionary's estimator restricted to the class's atoms)."""
    attrs = record.attrs
    if attrs.get("scope") == "dataset":
        from .shared import view_from_record

        return view_from_record(record, device=device)
    method = canonical_method(attrs.get("method", "nmf"))
    estimator = make_estimator(method, int(attrs.get("n_concepts", record.n_concepts)), device=device,
                               **_stored_params(attrs, method))
    estimator.load_state(record.components, record.state, info={
        "n_iter_": attrs.get("n_iter"), "converged_": attrs.get("converged"),
        "reconstruction_err_": attrs.get("fit_rel_error")})
    estimator.attrs = attrs
    estimator.path = record.path
    if record.coefficients is not None:
        estimator.coefficients_ = record.coefficients
    return estimator
