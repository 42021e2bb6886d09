"""Stage 2 at dataset scope, orchestration: the shared dictionary (``RUN/dictionary/shared.h5``) and the class views
(``RUN/concepts/<class>.h5``).

``factorize --scope dataset`` fits one dictionary on the rows of every class of the run (or of ``--classes``), then
writes each class's view of it: the ``concepts_per_class`` atoms it uses most and its rows' coefficients on them.
The dictionary records the settings that made it and the identity of every class's activations it was fitted on;
a class view records the dictionary's identity. So: re-extracting a class makes the dictionary stale (it is
refitted on the next run, and then every view is stale and rewritten); other settings are refused unless
``--overwrite``. ``concepts run`` fits the dictionary once (one task: one job, one GPU, on Slurm) and fans the
views out over tasks (:func:`ensure_dictionary`, then :func:`write_views` per batch of classes).
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

from ..errors import ConceptsError
from ..runner import ClassJob, StageReport, run_classes, say
from ..runtime import thread_limit
from ..schema import ConceptsWriter, DictionaryRecord, RunFolder, config_hash, identity_attributes, write_dictionary
from ..schema.hdf5 import peek_attrs
from ..schema.lineage import Wanted, existing_status, input_record
from ..schema.locks import artefact_lock
from ..settings import RunConfig
from .dataset import AtomView, class_view, fit_dictionary

_NOT_PROVENANCE = {"stage", "config", "config_hash", "created", "package", "package_version", "format_version",
                   "creation_id", "inputs", "class_id", "class_name", "class_index", "class_index_source",
                   "n_images", "n_skipped"}


#: what a class view does not copy from its activations file (the attributes of that stage itself)
_NOT_VIEW_PROVENANCE = {"stage", "config", "config_hash", "created", "package", "package_version", "format_version",
                        "creation_id", "inputs"}


def _classes(folder: RunFolder, cfg: RunConfig) -> list[str]:
    return folder.input_classes("extract", cfg.data.classes)


def _dictionary_wanted(folder: RunFolder, cfg: RunConfig, classes: list[str]) -> tuple[Wanted, dict[str, str]]:
    """What the dictionary should be: its settings, and the identities of the classes' activations."""
    from .stage import dictionary_config

    ids = {c: input_record(peek_attrs(folder.file("extract", c)))["creation_id"] for c in classes}
    config = {"stage": "dictionary", **dictionary_config(cfg)}
    return Wanted(config, config_hash(config), {"extract": {"creation_id": config_hash(ids), "config_hash": ""}}), ids


def ensure_dictionary(folder: RunFolder, cfg: RunConfig, *, overwrite: bool = False, progress: bool = True) -> str:
    """Fit the shared dictionary on the classes of ``cfg`` unless an up-to-date one is there; returns
    ``written``, ``stale`` (refitted) or ``done``."""
    from .stage import build_estimator

    classes = _classes(folder, cfg)
    path = folder.dictionary_file
    with artefact_lock(path, say=lambda m: say(m, progress)), thread_limit(cfg.executor.threads):
        wanted, ids = _dictionary_wanted(folder, cfg, classes)
        status = existing_status(path, wanted, overwrite, "factorize")
        if status == "done":
            return "done"
        say(f"factorize: fitting a shared {cfg.factorize.method} dictionary of {cfg.factorize.n_concepts} atoms on "
            f"{len(classes)} classes", progress)
        start = time.perf_counter()
        estimator = build_estimator(cfg)
        with ExitStack() as stack:
            caches = [stack.enter_context(folder.activations(c)) for c in classes]
            fit = fit_dictionary(caches, estimator, max_rows=cfg.factorize.max_rows,
                                 buffer_rows=cfg.factorize.buffer_rows, seed=cfg.factorize.seed)
            source = dict(caches[0].attrs)
        write_dictionary(path, _record(fit, wanted, source, classes, ids, time.perf_counter() - start))
        return "written" if status == "todo" else "stale"


def _record(fit, wanted: Wanted, source: dict, classes: list[str], ids: dict[str, str],
            seconds: float) -> DictionaryRecord:
    est = fit.estimator
    attrs = {k: v for k, v in source.items() if k not in _NOT_PROVENANCE}
    attrs.update(identity_attributes("dictionary"), **wanted.attributes())
    attrs.update(method=wanted.config["method"], params=wanted.config["params"],
                 n_concepts=int(est.components_.shape[0]), seed=int(wanted.config.get("seed", 0)), classes=classes,
                 class_activations=ids, n_rows=fit.n_rows, n_fit_rows=fit.n_fit_rows, fit=fit.mode,
                 fit_rel_error=float(getattr(est, "reconstruction_err_", float("nan"))),
                 n_iter=int(getattr(est, "n_iter_", 0) or 0), converged=bool(getattr(est, "converged_", True)),
                 device=str(est.device_), seconds=seconds)
    history = {}
    for entry in getattr(est, "history_", None) or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                if isinstance(value, (int, float)):
                    history.setdefault(key, []).append(float(value))
    return DictionaryRecord(path=None, attrs=attrs, components=est.components_, state=est.state_arrays(),
                            history=history)


def shared_estimator(folder: RunFolder, device=None):
    """The fitted estimator of the run's shared dictionary."""
    from .registry import make_estimator
    from .stage import RUNTIME_PARAMS

    record = folder.dictionary()
    attrs = record.attrs
    params = {k: v for k, v in (attrs.get("params") or {}).items() if k not in ("n_components", *RUNTIME_PARAMS)}
    estimator = make_estimator(attrs["method"], int(attrs["n_concepts"]), device=device, **params)
    estimator.load_state(record.components, record.state, info={
        "n_iter_": attrs.get("n_iter"), "converged_": attrs.get("converged"),
        "reconstruction_err_": attrs.get("fit_rel_error")})
    estimator.attrs = attrs
    return estimator


def write_views(folder: RunFolder, cfg: RunConfig, classes: list[str] | None = None, *, overwrite: bool = False,
                progress: bool = True) -> StageReport:
    """Each class's view of the (up-to-date) shared dictionary: ``RUN/concepts/<class>.h5``."""
    from .stage import wanted_config

    classes = classes or _classes(folder, cfg)
    dictionary = peek_attrs(folder.dictionary_file) if folder.dictionary_file.exists() else None
    if dictionary is None:
        raise ConceptsError(f"no shared dictionary in {folder.path}; run `concepts factorize --scope dataset` first")
    recorded = dictionary.get("class_activations") or {}
    for class_id in classes:
        current = input_record(peek_attrs(folder.file("extract", class_id)))["creation_id"]
        if recorded.get(class_id) != current:
            raise ConceptsError(f"the shared dictionary was not fitted on the current activations of class "
                                f"{class_id!r}; refit it (`concepts factorize --scope dataset` on the run)")
    estimator = shared_estimator(folder, None if cfg.model.device == "auto" else cfg.model.device)
    config = wanted_config(cfg)
    n_atoms = min(int(cfg.factorize.concepts_per_class), int(dictionary["n_concepts"]))

    def job(class_id: str) -> ClassJob:
        path = folder.file("factorize", class_id)

        def wanted() -> Wanted:
            source = peek_attrs(folder.file("extract", class_id))
            return Wanted(config, config_hash(config), {"extract": input_record(source),
                                                        "dictionary": input_record(dictionary)})

        def work(wanted: Wanted) -> None:
            _write_view(folder, class_id, estimator, dictionary, wanted, n_atoms, cfg)

        return ClassJob(class_id, path, wanted, work)

    with thread_limit(cfg.executor.threads):
        return run_classes("factorize", [job(c) for c in classes], overwrite=overwrite, progress=progress,
                           desc=f"factorize (views of {dictionary['method']}, {n_atoms} atoms per class)")


def _write_view(folder: RunFolder, class_id: str, estimator, dictionary: dict[str, Any], wanted: Wanted,
                n_atoms: int, cfg: RunConfig) -> None:
    start = time.perf_counter()
    with folder.activations(class_id) as cache:
        source = dict(cache.attrs)
        with ConceptsWriter(folder.file("factorize", class_id), n_rows=cache.n_rows, n_concepts=n_atoms) as writer:
            atoms, mass, diagnostics = class_view(cache, estimator, writer, n_atoms=n_atoms,
                                                  chunk_rows=cfg.factorize.chunk_rows)
            attrs = {k: v for k, v in source.items() if k not in _NOT_VIEW_PROVENANCE}
            attrs.update(identity_attributes("factorize"), **wanted.attributes(), **diagnostics)
            attrs.update(scope="dataset", method=dictionary["method"], params=dictionary.get("params") or {},
                         n_concepts=int(len(atoms)), dictionary_size=int(dictionary["n_concepts"]),
                         seed=int(dictionary.get("seed", 0)), n_iter=int(dictionary.get("n_iter", 0) or 0),
                         converged=bool(dictionary.get("converged", True)),
                         fit_rel_error=float(dictionary.get("fit_rel_error", float("nan"))),
                         n_rows=int(cache.n_rows), n_fit_rows=int(cache.n_rows), fit_rows="dictionary",
                         device=str(estimator.device_), source_config_hash=source.get("config_hash"),
                         ordering="class coefficient mass", seconds=time.perf_counter() - start)
            writer.finish(state={"atoms": atoms, "mass": mass}, attrs=attrs)


def shared_run(folder: RunFolder, cfg: RunConfig, *, overwrite: bool = False, progress: bool = True) -> StageReport:
    """``factorize --scope dataset``: the dictionary (fitted if needed), then every class's view of it."""
    ensure_dictionary(folder, cfg, overwrite=overwrite, progress=progress)
    return write_views(folder, cfg, overwrite=overwrite, progress=progress)


def view_from_record(record, device=None) -> AtomView:
    """The estimator of a class view (``load_concepts`` on a dataset-scope concepts file)."""
    from pathlib import Path

    folder = RunFolder(Path(record.path).parent.parent)
    view = AtomView(shared_estimator(folder, device=device), record.state["atoms"])
    view.attrs, view.path = record.attrs, record.path
    view.n_iter_, view.converged_ = record.attrs.get("n_iter"), record.attrs.get("converged")
    view.reconstruction_err_ = record.attrs.get("fit_rel_error")
    if record.coefficients is not None:
        view.coefficients_ = record.coefficients
    return view
