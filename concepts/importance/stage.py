"""Stage 3, orchestration: ``RUN/activations`` + ``RUN/concepts -> RUN/importance/<class>.h5`` for every class.

The model split recorded in the activations' provenance is rebuilt (through one
:class:`~concepts.models.ModelCache`), the computation is :mod:`concepts.importance.compute`, the file layout the
schema's (:data:`concepts.schema.IMPORTANCE`). An importance file whose concepts (or activations) were recomputed
since is stale and is recomputed on the next run; one made with other settings is refused unless ``overwrite``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ClassSkipped, ConceptsError
from ..runner import ClassJob, StageReport, run_classes
from ..runtime import thread_limit
from ..schema import RunFolder, config_hash, identity_attributes, write_importance
from ..schema.lineage import Wanted, input_record
from ..settings import RunConfig, stage_config
from .compute import ClassBlocks, fidelity_pass, importance_pass, make_record

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
    folder.scan("extract").check()  # a damaged input is an error naming it, whatever the class order
    available = folder.classes("factorize")
    todo = list(cfg.data.classes) if cfg.data.classes else available
    missing = [c for c in todo if c not in available]
    if missing:
        raise ConceptsError(f"no concepts for class(es) {', '.join(missing)} in {folder.path} "
                            "(run `concepts factorize`)")
    if not todo:
        raise ConceptsError(f"no concept files in {folder.path / 'concepts'} (run `concepts factorize` first)")
    jobs = [_job(folder, cfg, class_id, models, progress) for class_id in todo]
    with thread_limit(cfg.executor.threads):
        return run_classes("importance", jobs, overwrite=overwrite, progress=progress, desc="importance")


def wanted_config(cfg: RunConfig) -> dict[str, Any]:
    """The settings that decide an importance file's content (hashed into its config hash)."""
    return {"stage": "importance", **cfg.importance.hashed()}


def _job(folder: RunFolder, cfg: RunConfig, class_id: str, models, progress: bool) -> ClassJob:
    path = folder.file("importance", class_id)

    def wanted() -> Wanted:
        concepts = folder.concepts(class_id, coefficients=False).attrs
        with folder.activations(class_id) as cache:
            source = dict(cache.attrs)
        config = wanted_config(cfg)
        return Wanted(config, config_hash(config), {"extract": input_record(source),
                                                    "factorize": input_record(concepts)})

    def work(wanted: Wanted) -> None:
        write_importance(path, importance_class(folder, class_id, cfg, wanted, models, progress))

    return ClassJob(class_id, path, wanted, work)


def importance_class(folder: RunFolder, class_id: str, cfg: RunConfig, wanted: Wanted, models, progress: bool):
    """The :class:`~concepts.schema.ImportanceRecord` of one class (both passes)."""
    from ..factorize.stage import estimator_from_record

    settings = cfg.importance
    with folder.activations(class_id) as cache:
        attrs = dict(cache.attrs)
        record = folder.concepts(class_id, coefficients=False)
        split = models.for_artefact(attrs, keep=_tree_layers(record, attrs))
        device = split.device
        estimator = estimator_from_record(record, device=device)
        if len(cache.kept) == 0:
            raise ClassSkipped("no readable images")
        data = ClassBlocks(cache, estimator, settings.residual, settings.image_block)
        head, linear = split.h_positions, split.linear_head()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            levels = len(set(record.tree.depth.tolist())) if record.tree is not None else 0  # sub-concept passes
            bar = tqdm(total=(2 + levels) * len(cache.kept), desc=f"importance {class_id}", unit="img", leave=False)
        try:
            first = importance_pass(data, settings, head, linear, cache.class_index, tuple(cache.grid), device, bar)
            fidelity = fidelity_pass(data, first, settings, head, linear, cache.class_index, device, bar)
            sub = _subconcepts(folder, class_id, cache, record, first, settings, models, data.blocks, bar)
        finally:
            if bar is not None:
                bar.close()
        root = {**identity_attributes("importance"), **wanted.attributes(), **settings.hashed(),
                **{k: attrs[k] for k in PROVENANCE if k in attrs}}
        root.update(class_id=attrs.get("class_id", class_id), class_name=attrs.get("class_name", class_id),
                    class_index=int(cache.class_index), n_images=int(cache.n_images), n_kept=int(len(cache.kept)),
                    n_concepts=int(data.W.shape[0]), n_positions=int(cache.n_positions), grid=list(cache.grid),
                    concepts_method=record.method, linear_head=linear is not None, device=str(device),
                    source_config_hash=record.attrs.get("config_hash"))
        made = make_record(first, fidelity, settings, kept=cache.kept, n_images=cache.n_images,
                           class_index=cache.class_index, grid=cache.grid,
                           input_size=int(getattr(split, "input_size", 0) or 0), attrs=root)
        made.subconcepts = sub
        return made


def _tree_layers(record, attrs) -> tuple[str, ...]:
    """The layer of a concepts file's sub-concepts when it is not the concepts' own (loaded with the model)."""
    layer = (record.tree.attrs.get("layer") if record.tree is not None else None) or attrs.get("layer")
    return (layer,) if layer != attrs.get("layer") else ()


def _subconcepts(folder: RunFolder, class_id: str, cache, record, first, settings, models, blocks, bar):
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
        split = models.for_artefact(dict(sub_cache.attrs)) if other else models.for_artefact(dict(cache.attrs))
        ctx = SubContext(sub_cache, blocks, split.h_positions, split.linear_head(), cache.class_index, split.device,
                         np.concatenate(first.coefficients), tuple(cache.grid))
        for parent, nodes, _ in groups_of(tree.parent, tree.depth, r):
            ctx.estimators[parent] = subconcept_estimator(record, nodes - r, device=split.device)
        shares = {name: np.asarray(result.share) for name, result in first.results.items()}
        sub = subconcept_pass(ctx, tree, r, settings, shares, bar)
    finally:
        if sub_cache is not cache:
            sub_cache.close()
    for arrays in sub.methods.values():
        arrays["per_image"] = _full(arrays["per_image"].astype(np.float32), cache.kept, cache.n_images)
    sub.presence = _full(sub.presence, cache.kept, cache.n_images, 0)
    return sub


def load_importance(run: str | os.PathLike, class_id: str, *, maps: bool = True):
    """The :class:`~concepts.schema.ImportanceRecord` of a class: ``.methods[name]`` (``per_image``,
    ``class_importance``, ``share``, CIs, ``ranking``), ``.presence``/``.contribution`` maps, ``.fidelity``."""
    return RunFolder(run).importance(class_id, maps=maps)
