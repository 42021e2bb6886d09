"""Feature visualisation, orchestration: ``RUN/activations`` + ``RUN/concepts -> RUN/fviz/<class>.h5`` per class.

For every class with concepts: the model recorded in the activations' provenance is rebuilt (one
:class:`~concepts.models.ModelCache`), the magnitude spectrum is estimated on the class's photos (or read from the
``.npy`` given as ``spectrum``), and :func:`concepts.fviz.compute.visualize_bank` makes one MACO image per concept
and one for the class logit; with sub-concepts (a recursive concepts file, setting ``subconcepts``, on by default)
:func:`concepts.fviz.subconcepts.visualize_subconcepts` adds one per sub-concept, a MACO run per group of siblings
at the sub-concepts' layer. The file layout is the schema's (:data:`concepts.schema.FVIZ`). A file whose concepts
(or activations) were recomputed since is stale and recomputed; one made with other settings is refused unless
``overwrite``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ClassSkipped, ConceptsError
from ..importance.stage import HeadCache
from ..runner import ClassJob, StageReport, run_classes
from ..runtime import thread_limit
from ..schema import FvizRecord, RunFolder, config_hash, file_sha256, identity_attributes, write_fviz
from ..schema.classdata import resolve_image_path
from ..schema.lineage import Wanted, input_record
from ..settings import RunConfig, stage_config
from .compute import photo_spectrum, visualize_bank
from .maco import Maco
from .spectrum import load_spectrum
from .subconcepts import n_subconcept_batches, visualize_subconcepts

PROVENANCE = ("model", "weights", "weights_sha256", "checkpoint", "layer", "layout", "grid", "n_prefix",
              "preprocessing", "class_index_source")


def maco_from_settings(settings) -> Maco:
    """The :class:`~concepts.fviz.maco.Maco` of an ``fviz`` settings section."""
    return Maco(steps=settings.steps, lr=settings.lr, crops=settings.crops, crop_min=settings.crop_min,
                crop_max=settings.crop_max, noise=settings.noise, image_size=settings.image_size,
                seed=settings.seed, batch=settings.batch, power=settings.power, floor=settings.cos_floor)


def fviz_run(run: str | os.PathLike, *, config: RunConfig | None = None, models=None, overwrite: bool = False,
             progress: bool = True, **settings: Any) -> StageReport:
    """Feature visualisations for every class with concepts (or ``classes``); returns the
    :class:`~concepts.runner.StageReport`.

    ``settings`` are keywords of the ``fviz`` section (``steps``, ``lr``, ``crops``, ``crop_min``, ``crop_max``,
    ``noise``, ``image_size``, ``power``, ``cos_floor``, ``logit``, ``subconcepts``, ``spectrum``,
    ``spectrum_images``, ``seed``, ``batch``), ``classes``, ``device`` and ``threads``. ``models``: a :class:`~concepts.models.ModelCache` to share.
    """
    from ..models import ModelCache

    cfg = stage_config("fviz", config, **settings)
    folder = RunFolder(run)
    todo = folder.input_classes("factorize", cfg.data.classes)
    spectrum_sha = spectrum_sha256(cfg)
    models = models or ModelCache(None if cfg.model.device == "auto" else cfg.model.device)
    heads = HeadCache()  # the head the importances explain (probe, zero-shot ...), attached once
    jobs = [_job(folder, cfg, class_id, models, progress, spectrum_sha, heads) for class_id in todo]
    with thread_limit(cfg.executor.threads):
        return run_classes("fviz", jobs, overwrite=overwrite, progress=progress, desc="fviz")


def spectrum_sha256(cfg: RunConfig) -> str | None:
    """The sha256 of a user-supplied spectrum file (None for the run's own images); a missing file is an error."""
    if cfg.fviz.spectrum == "images":
        return None
    path = os.path.expanduser(cfg.fviz.spectrum)
    if not os.path.isfile(path):
        raise ConceptsError(f"fviz.spectrum: file {path} not found (a .npy magnitude spectrum, or 'images')")
    return file_sha256(path)


def wanted_config(cfg: RunConfig, spectrum_sha: str | None = ..., concepts: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The settings that decide a feature-visualisation file (hashed into its config hash). ``concepts``: the
    attributes of the class's concepts file; ``subconcepts`` enters the hash only when that file is recursive and the
    setting is on, so the files of other classes and runs keep their hash."""
    config = {"stage": "fviz", **cfg.fviz.hashed()}
    spectrum_sha = spectrum_sha256(cfg) if spectrum_sha is ... else spectrum_sha
    if spectrum_sha:
        config["spectrum_sha256"] = spectrum_sha
    if wants_subconcepts(cfg, concepts):
        config["subconcepts"] = True
    return config


def wants_subconcepts(cfg: RunConfig, concepts: dict[str, Any] | None) -> bool:
    """Whether the class's sub-concepts are visualised: the setting is on and its concepts file is recursive."""
    return bool(cfg.fviz.subconcepts and concepts and (concepts.get("config") or {}).get("recursive"))


def _job(folder: RunFolder, cfg: RunConfig, class_id: str, models, progress: bool, spectrum_sha,
         heads: HeadCache | None = None) -> ClassJob:
    path = folder.file("fviz", class_id)

    def wanted() -> Wanted:
        concepts = folder.concepts(class_id, coefficients=False).attrs
        with folder.activations(class_id) as cache:
            source = dict(cache.attrs)
        config = wanted_config(cfg, spectrum_sha, concepts)
        return Wanted(config, config_hash(config), {"extract": input_record(source),
                                                    "factorize": input_record(concepts)})

    def work(wanted: Wanted) -> None:
        write_fviz(path, fviz_class(folder, class_id, cfg, wanted, models, progress, heads))

    return ClassJob(class_id, path, wanted, work)


def fviz_class(folder: RunFolder, class_id: str, cfg: RunConfig, wanted: Wanted, models, progress: bool,
               heads: HeadCache | None = None) -> FvizRecord:
    """The :class:`~concepts.schema.FvizRecord` of one class (its sub-concepts' images too when
    ``wanted.config`` asks for them)."""
    import time

    from ..factorize.stage import estimator_from_record
    from ..importance.stage import _tree_layers
    from ..models.preprocessing import Preprocessing

    start = time.perf_counter()
    settings = cfg.fviz
    record = folder.concepts(class_id, coefficients=True)
    with folder.activations(class_id) as cache:
        attrs = dict(cache.attrs)
        recorded = [cache.images["path"][i] for i in cache.kept]
        if not recorded:
            raise ClassSkipped("no readable images")
        head_used = (heads or HeadCache()).get(folder, attrs, models, keep=_tree_layers(record, attrs))
        class_index = cache.class_index if head_used.classes is None else head_used.class_index(class_id)
    paths = [str(resolve_image_path(folder.path, raw) or raw) for raw in recorded]
    split = head_used.split if head_used.split is not None else models.for_artefact(attrs)
    logit = bool(settings.logit) and head_used.scores  # no class score (--head none): no logit image
    preprocessing = getattr(split, "preprocessing", None) or Preprocessing(**attrs["preprocessing"])
    estimator = estimator_from_record(record, device=split.device)
    spectrum = photo_spectrum(paths, preprocessing, settings.spectrum_images)
    if settings.spectrum != "images":
        spectrum = load_spectrum(settings.spectrum, spectrum)
    maco = maco_from_settings(settings)
    subs = wanted.config.get("subconcepts") and record.tree is not None
    batches = -(-(record.n_concepts + int(logit)) // settings.batch)
    batches += n_subconcept_batches(record.tree, record.n_concepts, settings.batch) if subs else 0
    bar = _progress_bar(progress, settings.steps * batches, class_id)
    key = str(attrs.get("class_id", class_id))
    try:
        made = visualize_bank(split, record.components, lambda a: _transform(estimator, a), record.coefficients,
                              preprocessing, spectrum, maco, class_index=class_index, logit_target=logit, key=key,
                              progress=None if bar is None else bar.update)
        sub, sub_layer = _subconcepts(folder, class_id, record, attrs, (split, models), head_used, class_index,
                                      preprocessing, spectrum, maco, key, bar) if subs else (None, None)
    finally:
        if bar is not None:
            bar.close()
    root = {**identity_attributes("fviz"), **wanted.attributes(), **settings.hashed(),
            **{k: attrs[k] for k in PROVENANCE if k in attrs}}
    root.update(class_id=attrs.get("class_id", class_id), class_name=attrs.get("class_name", class_id),
                class_index=int(class_index), spectrum="images" if settings.spectrum == "images" else spectrum.source,
                spectrum_sha256=spectrum.digest(), spectrum_images=int(spectrum.n_images),
                eval_scale=float(made.info["eval_scale"]), eval_crops=int(made.info["eval_crops"]),
                n_concepts=int(record.n_concepts), n_targets=len(made.targets), excited=int(made.excited.sum()),
                concepts_method=record.method, source_config_hash=record.attrs.get("config_hash"),
                device=str(split.device), seconds=float(time.perf_counter() - start))
    if sub is not None:
        root.update(n_subconcepts=len(sub), subconcepts_excited=int(sub.excited.sum()), subconcepts_layer=sub_layer)
    return FvizRecord(attrs=root, images=made.images, transparency=made.transparency,
                      targets=[t.name for t in made.targets], objective=made.objective, curve=made.curve,
                      coefficients=made.coefficients, percentile=made.percentile, logit=made.logit, p99=made.p99,
                      spectrum={"magnitude": spectrum.magnitude, "mean": spectrum.mean, "color": spectrum.color},
                      subconcepts=sub)


def _progress_bar(progress: bool, total: int, class_id: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"fviz {class_id}", unit="step", leave=False)


def _subconcepts(folder: RunFolder, class_id: str, record, attrs, split_models, head_used, class_index,
                 preprocessing, spectrum, maco, key: str, bar):
    """The sub-concepts' images (:class:`~concepts.schema.FvizSubconcepts`) and their layer: at the concepts'
    layer through the class's split, at ``--sub-layer`` through the model cut there (its logit measured only when
    the run explains the model's own classifier, the one that cut ends in)."""
    from ..factorize.stage import subconcept_estimator
    from ..importance.stage import _tree_layers

    split, models = split_models
    other = _tree_layers(record, attrs)
    layer = other[0] if other else str(attrs.get("layer", ""))
    if other:
        with folder.at_layer(layer).activations(class_id) as sub_cache:
            split = models.for_artefact(dict(sub_cache.attrs))
        class_index = class_index if head_used.request == "model" else None
    elif not head_used.scores:
        class_index = None

    def estimator_of(positions):
        estimator = subconcept_estimator(record, positions, device=split.device)
        return lambda a: _transform(estimator, a)

    made = visualize_subconcepts(record, split, estimator_of, preprocessing, spectrum, maco, class_index=class_index,
                                 key=key, progress=None if bar is None else bar.update)
    return made, layer


def _transform(estimator, pooled: np.ndarray) -> np.ndarray:
    out = estimator.transform(np.asarray(pooled, np.float32))
    return np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, np.float32)


def load_fviz(run: str | os.PathLike, class_id: str, *, images: bool = True) -> FvizRecord:
    """The :class:`~concepts.schema.FvizRecord` of a class: ``.concept_images()`` (r, S, S, 3) uint8 and
    ``.concept_transparency()`` (r, S, S) float32 in bank order, ``.logit_image``, ``.excites()``, the measures."""
    return RunFolder(run).fviz(class_id, images=images)
