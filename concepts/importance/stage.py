"""Stage 3, orchestration: ``RUN/activations`` + ``RUN/concepts -> RUN/importance/<class>.h5`` for every class.

The model split recorded in the activations' provenance is rebuilt (through one
:class:`~concepts.models.ModelCache`), the computation is :mod:`concepts.importance.compute`, the file layout the
schema's (:data:`concepts.schema.IMPORTANCE`). An importance file whose concepts (or activations) were recomputed
since is stale and is recomputed on the next run; one made with other settings is refused unless ``overwrite``.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import ClassSkipped, ConceptsError
from ..runner import ClassJob, StageReport, run_classes
from ..runtime import pick_device, thread_limit, work_threads
from ..schema import RunFolder, config_hash, identity_attributes, write_importance
from ..schema.lineage import Wanted, input_record
from ..settings import RunConfig, stage_config
from ..heads.resolve import run_probe_record
from .compute import ClassBlocks, fidelity_pass, importance_pass, make_record
from .prevalence import prevalence_record

PROVENANCE = ("model", "weights", "weights_sha256", "checkpoint", "layer", "layout", "grid", "n_prefix",
              "preprocessing", "mode", "patch_size", "stride", "class_index_source")


def importance_run(run: str | os.PathLike, *, config: RunConfig | None = None, models=None,
                   overwrite: bool = False, progress: bool = True, **settings: Any) -> StageReport:
    """Stage 3 for every class with concepts (or ``classes``); returns the :class:`~concepts.runner.StageReport`.

    ``settings`` are keywords of the ``importance`` section (``methods``, ``designs``, ``sampler``, ``estimator``,
    ``seed``, ``residual``, ``exact``, ``score``, ``steps``, ``n_subsets``, ``correlation``, ``confidence``,
    ``batch_size``, ``image_block``), ``classes``, ``device`` and ``threads``. ``models``: a
    :class:`~concepts.models.ModelCache` to share (the model a stage before loaded is then reused).
    """
    from ..models import ModelCache

    cfg = stage_config("importance", config, **settings)
    models = models or ModelCache(None if cfg.model.device == "auto" else cfg.model.device)
    reports = {}
    for layer in cfg.model.layers:
        reports[layer or "main"] = _importance_folder(RunFolder(run, layer=layer), cfg, models, overwrite, progress)
    report = next(iter(reports.values()))
    report.layers = dict(list(reports.items())[1:])
    return report


def _importance_folder(folder: RunFolder, cfg: RunConfig, models, overwrite: bool, progress: bool) -> StageReport:
    """Stage 3 for the classes of one layer's folder."""
    folder.scan("extract", cfg.data.classes).check()  # a damaged input is an error naming it, whatever the class order
    todo = folder.input_classes("factorize", cfg.data.classes)
    heads = HeadCache()
    jobs = [_job(folder, cfg, class_id, models, heads, progress) for class_id in todo]
    with thread_limit(cfg.executor.threads):
        return run_classes("importance", jobs, overwrite=overwrite, progress=progress, desc="importance")


def wanted_config(cfg: RunConfig) -> dict[str, Any]:
    """The settings that decide an importance file's content (hashed into its config hash)."""
    return {"stage": "importance", **cfg.importance.hashed()}


class HeadCache:
    """The head of the stage's classes, attached once per backbone and head (a run has one of each)."""

    def __init__(self):
        self._entry: tuple[tuple, Any] | None = None

    def get(self, folder: RunFolder, attrs: dict[str, Any], models, keep: tuple = ()):
        from ..heads.resolve import ResolvedHead, head_for_artefact

        if str(attrs.get("head")) == "none" and run_probe_record(folder.path) is None:
            return ResolvedHead("none", None, "none", source="activations")  # prevalence needs no model
        split = models.for_artefact(attrs, keep=keep)
        key = (id(split), attrs.get("head_request"), attrs.get("head"), attrs.get("head_sha256"),
               str(run_probe_record(folder.path)))
        if self._entry is None or self._entry[0] != key:
            self._entry = (key, head_for_artefact(folder.path, attrs, split))
        return self._entry[1]


def _job(folder: RunFolder, cfg: RunConfig, class_id: str, models, heads: HeadCache, progress: bool) -> ClassJob:
    path = folder.file("importance", class_id)

    def wanted() -> Wanted:
        concepts = folder.concepts(class_id, coefficients=False).attrs
        with folder.activations(class_id) as cache:
            source = dict(cache.attrs)
        config = wanted_config(cfg)
        inputs = {"extract": input_record(source), "factorize": input_record(concepts)}
        probe = run_probe_record(folder.path)
        if probe is not None:  # a retrained probe makes the importances stale
            inputs["head"] = probe
        return Wanted(config, config_hash(config), inputs)

    def work(wanted: Wanted) -> None:
        write_importance(path, importance_class(folder, class_id, cfg, wanted, models, progress, heads))

    return ClassJob(class_id, path, wanted, work)


def importance_class(folder: RunFolder, class_id: str, cfg: RunConfig, wanted: Wanted, models, progress: bool,
                     heads: HeadCache | None = None):
    """The :class:`~concepts.schema.ImportanceRecord` of one class (both passes; prevalence without a head)."""
    from ..factorize.stage import estimator_from_record

    settings = cfg.importance
    with folder.activations(class_id) as cache:
        attrs = dict(cache.attrs)
        record = folder.concepts(class_id, coefficients=False)
        head_used = (heads or HeadCache()).get(folder, attrs, models, keep=_tree_layers(record, attrs))
        split = head_used.split
        device = split.device if split is not None else pick_device(cfg.model.device)
        class_index = cache.class_index if head_used.classes is None else head_used.class_index(class_id)
        estimator = estimator_from_record(record, device=device)
        if len(cache.mapped) == 0:
            raise ClassSkipped("no readable images")
        data = ClassBlocks(cache, estimator, settings.residual, settings.image_block)
        head, linear = (split.h_positions, split.linear_head()) if split is not None else (None, None)
        root = {**identity_attributes("importance"), **wanted.attributes(), **settings.hashed(),
                **{k: attrs[k] for k in PROVENANCE if k in attrs}, **head_used.attributes()}
        root.update(class_id=attrs.get("class_id", class_id), class_name=attrs.get("class_name", class_id),
                    class_index=int(class_index if head_used.scores else -1), n_images=int(cache.n_images),
                    n_kept=int(len(cache.mapped)), n_concepts=int(data.W.shape[0]), n_positions=int(cache.n_positions),
                    grid=list(cache.grid), concepts_method=record.method, linear_head=linear is not None,
                    device=str(device), source_config_hash=record.attrs.get("config_hash"),
                    importance_kind="importance")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            levels = len(set(record.tree.depth.tolist())) if record.tree is not None else 0  # sub-concept passes
            bar = tqdm(total=(2 + levels) * len(cache.mapped), desc=f"importance {class_id}", unit="img", leave=False)
        # closed forms (a global-average-pool + linear head) are small operations: one thread (runtime.threads_for);
        # a head evaluated on perturbations keeps the caller's threads for its forward passes
        closed = linear is not None and settings.exact != "off"
        work = float(cache.n_positions) * len(cache.mapped) * cache.n_channels * data.W.shape[0] if closed else math.inf
        try:
            if not head_used.scores:  # no class score: prevalence instead of importance
                return prevalence_record(data, tuple(cache.grid), settings.confidence, root, bar)
            with work_threads(work):
                precision = attrs.get("precision")  # the head runs in the model's precision at extraction
                first = importance_pass(data, settings, head, linear, class_index, tuple(cache.grid), device,
                                        bar, precision=precision)
                fidelity = fidelity_pass(data, first, settings, head, linear, class_index, device, bar,
                                         precision=precision)
            sub = _subconcepts(folder, class_id, cache, record, first, settings, models, data.blocks, bar,
                               head_used, class_index)
        finally:
            if bar is not None:
                bar.close()
        made = make_record(first, fidelity, settings, kept=cache.mapped, n_images=cache.n_images,
                           class_index=class_index, grid=cache.grid,
                           input_size=int(getattr(split, "input_size", 0) or 0), attrs=root)
        made.subconcepts = sub
        return made


def _tree_layers(record, attrs) -> tuple[str, ...]:
    """The layer of a concepts file's sub-concepts when it is not the concepts' own (loaded with the model)."""
    layer = (record.tree.attrs.get("layer") if record.tree is not None else None) or attrs.get("layer")
    return (layer,) if layer != attrs.get("layer") else ()


def _subconcepts(folder: RunFolder, class_id: str, cache, record, first, settings, models, blocks, bar, head_used,
                 class_index: int):
    """The importances of the sub-concepts of a recursive concepts file (None without sub-concepts)."""
    from ..factorize.stage import subconcept_estimator
    from .compute import _full
    from .subconcepts import SubContext, groups_of, subconcept_pass

    tree = record.tree
    if tree is None or tree.n_nodes == 0:
        return None
    r = record.n_concepts
    other = _tree_layers(record, cache.attrs)
    sub_cache = folder.at_layer(other[0]).activations(class_id) if other else cache
    try:
        if other and head_used.request != "model":
            raise ConceptsError(f"class {class_id!r}: sub-concepts at layer {other[0]} are scored through the model's "
                                f"own classifier, but this run explains the {head_used.kind} head "
                                f"({head_used.request}); factorize the sub-concepts at the concepts' layer")
        split = models.for_artefact(dict(sub_cache.attrs)) if other else head_used.split
        ctx = SubContext(sub_cache, blocks, split.h_positions, split.linear_head(), class_index, split.device,
                         np.concatenate(first.coefficients), tuple(cache.grid))
        for parent, nodes, _ in groups_of(tree.parent, tree.depth, r):
            ctx.estimators[parent] = subconcept_estimator(record, nodes - r, device=split.device)
        shares = {name: np.asarray(result.share) for name, result in first.results.items()}
        sub = subconcept_pass(ctx, tree, r, settings, shares, bar)
    finally:
        if sub_cache is not cache:
            sub_cache.close()
    for arrays in sub.methods.values():
        arrays["per_image"] = _full(arrays["per_image"].astype(np.float32), cache.mapped, cache.n_images)
    sub.presence = _full(sub.presence, cache.mapped, cache.n_images, 0)
    return sub


def load_importance(run: str | os.PathLike, class_id: str, *, maps: bool = True):
    """The :class:`~concepts.schema.ImportanceRecord` of a class: ``.methods[name]`` (``per_image``,
    ``class_importance``, ``share``, CIs, ``ranking``), ``.presence``/``.contribution`` maps, ``.fidelity``."""
    return RunFolder(run).importance(class_id, maps=maps)
