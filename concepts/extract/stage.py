"""Stage 1, orchestration: ``IMAGES/<class>/* -> RUN/activations/<class>.h5`` for every selected class.

Settings come from :class:`~concepts.settings.RunConfig` (sections ``data``, ``model``, ``extract``); the per-class
loop (resume, staleness, atomic writes, skipped classes) is :func:`concepts.runner.run_classes`. A class's file is
stale when its image list changed since it was written (images added, removed or resized on disk).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import discover, read_labels_file, resolve_label
from ..errors import ClassSkipped, ConceptsError
from ..runner import ClassJob, StageReport, run_classes, say
from ..runtime import autocast_dtype, cpu_has_native_bf16, default_workers, thread_limit
from ..schema import ActivationsWriter, RunFolder, config_hash, identity_attributes, stage_path
from ..schema.lineage import Wanted
from ..settings import RunConfig, stage_config
from .extractor import Sampler, extract_class
from .sampling import crop_stride

DTYPES = {"float16": np.float16, "float32": np.float32}


def image_listing(files: list[Path]) -> str:
    """The identity of a class's image list: paths and sizes (a changed list makes the activations stale)."""
    digest = hashlib.sha256()
    for path in files:
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1
        digest.update(f"{Path(path).resolve()}|{size}\n".encode())
    return digest.hexdigest()[:16]


def wanted_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings that decide an activations file's content (with the model's identity, its config hash)."""
    return {**cfg.extract.hashed(), **cfg.model.hashed()}


_MAIN = object()


def model_request(cfg: RunConfig, layer: Any = _MAIN) -> dict[str, Any]:
    """The model asked for at ``layer`` (default: the main layer), as the settings say it (checked without loading
    the model by ``concepts run``). A layer of a several-layer run asks what a one-layer run at it asks."""
    m = cfg.model
    checkpoint = str(Path(m.checkpoint).expanduser().resolve()) if m.checkpoint else None
    layer = m.main_layer if layer is _MAIN else layer
    layer = None if layer in ("", "features") else layer  # 'features' names the default cut (ModelSplit)
    return {"name": m.name, "checkpoint": checkpoint, "pretrained": bool(m.pretrained), "layer": layer}


def model_identity(info: dict[str, Any]) -> dict[str, Any]:
    """What identifies the model's function at the cut (enters the config hash)."""
    return {key: info[key] for key in ("model", "weights_sha256", "layer", "preprocessing")}


def provenance(info: dict[str, Any], split, cfg: RunConfig) -> dict[str, Any]:
    """The provenance attributes of an activations file (model, weights, cut, preprocessing, sampling)."""
    crops = cfg.extract.mode == "crops"
    return dict(
        model=info["model"], weights=info["weights"], weights_sha256=info["weights_sha256"],
        checkpoint=info.get("checkpoint"), layer=info["layer"], layout=split.layout, grid=list(split.grid),
        n_prefix=split.n_prefix, n_channels=split.n_channels, preprocessing=info["preprocessing"],
        mode=cfg.extract.mode, patch_size=int(cfg.extract.patch_size) if crops else 0,
        stride=crop_stride(cfg.extract.patch_size) if crops else 0, dtype=cfg.extract.dtype,
        precision=cfg.model.precision, compression=cfg.extract.compression)


def _check_model(split, info, cfg: RunConfig, progress: bool) -> None:
    if not int(getattr(split.model, "num_classes", 0) or 0):
        raise ConceptsError(f"model {info['model']!r} has no classifier head (num_classes = 0): concepts are "
                            "explained for a class logit")
    if cfg.model.layout not in ("auto", split.layout):
        raise ConceptsError(f"model.layout: {cfg.model.layout!r} expected but the model's cut gives "
                            f"{split.layout!r}; set model.layout to auto or {split.layout}")
    if split.device.type == "cpu" and cfg.model.precision == "bf16" and cpu_has_native_bf16() is False:
        say("warning: this CPU has no bfloat16 instructions (AVX512-BF16/AMX): bf16 is emulated and slower than "
            "fp32 here; use --precision fp32", progress)


def extract_run(images: str | os.PathLike | None, out: str | os.PathLike | None, *,
                config: RunConfig | None = None, models=None, split=None, info: dict[str, Any] | None = None,
                overwrite: bool = False, progress: bool = True, **settings: Any) -> StageReport:
    """Extract the activations of every selected class of ``images`` into ``out/activations/<class>.h5``.

    ``settings`` are keywords of the ``data``, ``model`` and ``extract`` settings (``model``, ``layer``, ``mode``,
    ``patch_size``, ``classes``, ``max_images`` ...) applied over ``config``. Finished classes are skipped, stale
    ones recomputed, a file made with other settings refused unless ``overwrite``. ``models``: a
    :class:`~concepts.models.ModelCache` to share; ``split``/``info``: a model already loaded. Returns the
    :class:`~concepts.runner.StageReport` (a sequence of the class files).
    """
    if images is not None:
        settings["images"] = images
    if out is not None:
        settings["out"] = out
    cfg = stage_config("extract", config, **settings)
    if not cfg.data.images or not cfg.out:
        raise ConceptsError("extract needs an image folder and a run folder (--out)")
    found = discover(cfg.data.images, list(cfg.data.classes) if cfg.data.classes else None, cfg.data.max_images)
    table = read_labels_file(cfg.data.labels) if cfg.data.labels else None
    autocast_dtype(cfg.model.precision)
    with thread_limit(cfg.executor.threads):
        if split is None:
            from ..models import ModelCache

            models = models or ModelCache()
            split, info = models.get(cfg.model.name, cfg.model.checkpoint, cfg.model.main_layer, cfg.model.pretrained,
                                     None if cfg.model.device == "auto" else cfg.model.device,
                                     keep=tuple(layer for layer in cfg.model.layers if layer))
        _check_model(split, info, cfg, progress)
        cuts = _cuts(split, info, cfg, progress)
        num_classes = int(split.model.num_classes)
        jobs, empty = [], {}
        for cls in found:
            if not cls.files:
                empty[cls.class_id] = "no image files"
                say(f"warning: extract: class {cls.class_id!r} has no image files; skipped", progress)
                continue
            label = resolve_label(cls.class_id, num_classes, table)
            if len(cuts) == 1:
                jobs.append(_job(cfg, split, info, cls.class_id, cls.files, label, progress, path=cuts[0][3](cls.class_id)))
            else:
                jobs.append(_layers_job(cfg, cuts, cls.class_id, cls.files, label, progress))
        report = run_classes("extract", jobs, overwrite=overwrite, progress=progress, desc="extract")
    report.skipped.update(empty)
    if progress and not report.written and report.done:
        say(f"extract: all {len(report.done)} classes already done in {cfg.out}; nothing to do", progress)
    return report


def _cuts(split, info, cfg: RunConfig, progress: bool) -> list[tuple]:
    """``(asked layer, split, info, path of a class)`` of every layer: the main one in the run folder, the others
    in ``RUN/layers/<name>`` (:mod:`concepts.schema.layout`)."""
    from ..models import layer_splits

    layers = cfg.model.layers
    pairs = [(split, info)] if len(layers) == 1 else layer_splits(split, info, layers)
    folder = RunFolder(cfg.out, must_exist=False)
    cuts = []
    for asked, (cut, cut_info) in zip(layers, pairs):
        where = folder.layer_path(cut_info["layer"], first=pairs[0][1]["layer"])
        if where != folder.root and progress:
            say(f"extract: layer {cut_info['layer']} -> {where}", progress)
        cuts.append((asked, cut, cut_info, lambda class_id, where=where: stage_path(where, "extract", class_id)))
    return cuts


def _wanted(cfg: RunConfig, info, layer, label, files: list[Path]) -> Wanted:
    config = {"stage": "extract", "settings": wanted_settings(cfg), "request": model_request(cfg, layer),
              "model": model_identity(info), "class_index": label.index, "class_index_source": label.source}
    return Wanted(config, config_hash(config), {"images": {"creation_id": image_listing(files), "config_hash": ""}})


def _writer(cfg: RunConfig, split, sampler: Sampler, path: Path, n_images: int) -> ActivationsWriter:
    return ActivationsWriter(path, n_images=n_images, n_positions=split.grid[0] * split.grid[1],
                             n_channels=split.n_channels, n_prefix=split.n_prefix if split.layout == "tokens" else 0,
                             crops=cfg.extract.mode == "crops", dtype=DTYPES[cfg.extract.dtype],
                             compression=cfg.extract.compression, rows_per_image=len(sampler.boxes))


def _finish(writer, log, sampler: Sampler, wanted: Wanted, info, split, cfg: RunConfig, class_id, files, label):
    """The class index (the model's most frequent prediction when no label says it) and the file's tables."""
    if not log.ok.any():
        raise ClassSkipped("no readable image")
    index = label.index
    if index is None:  # the model's most frequent prediction on the class (recorded as such)
        index = int(Counter(log.logits[log.ok].argmax(1).tolist()).most_common(1)[0][0])
    attrs = {**identity_attributes("extract"), **wanted.attributes(), **provenance(info, split, cfg),
             "class_id": class_id, "class_name": label.name, "class_index": int(index),
             "class_index_source": label.source, "n_images": len(files), "n_skipped": int((~log.ok).sum())}
    writer.finish(rows=sampler.row_table(log.row_image), images=log.table(files, index), attrs=attrs)


def _workers(cfg: RunConfig, split) -> int:
    return default_workers(split.device) if cfg.extract.workers is None else int(cfg.extract.workers)


def _job(cfg: RunConfig, split, info, class_id: str, files: list[Path], label, progress: bool, *,
         path: Path | None = None) -> ClassJob:
    path = path or stage_path(cfg.out, "extract", class_id)

    def wanted() -> Wanted:
        return _wanted(cfg, info, cfg.model.main_layer, label, files)

    def work(wanted: Wanted) -> None:
        sampler = Sampler(split, cfg.extract.mode, cfg.extract.patch_size)
        with _writer(cfg, split, sampler, path, len(files)) as writer:
            log = extract_class(split, files, writer, sampler, precision=cfg.model.precision,
                                batch_size=cfg.extract.batch_size, workers=_workers(cfg, split), progress=progress,
                                desc=class_id, warn=lambda m: say(f"warning: {m}", progress))
            _finish(writer, log, sampler, wanted, info, split, cfg, class_id, files, label)

    return ClassJob(class_id, path, wanted, work)


def _layers_job(cfg: RunConfig, cuts: list[tuple], class_id: str, files: list[Path], label,
                progress: bool) -> ClassJob:
    """One class, several layers: one forward pass writes every layer's file that is not done."""
    from ..models.taps import LayerTap
    from .layers import extract_class_layers

    paths = [where(class_id) for _, _, _, where in cuts]
    makers = [lambda asked=asked, cut_info=cut_info: _wanted(cfg, cut_info, asked, label, files)
              for asked, _, cut_info, _ in cuts]

    def work(todo: dict[Path, Wanted]) -> None:
        chosen = [i for i, p in enumerate(paths) if p in todo]
        splits = [cuts[i][1] for i in chosen]
        samplers = [Sampler(s, cfg.extract.mode, cfg.extract.patch_size) for s in splits]
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(_writer(cfg, s, m, paths[i], len(files)))
                       for i, s, m in zip(chosen, splits, samplers)]
            log = extract_class_layers(LayerTap(splits), files, writers, samplers, precision=cfg.model.precision,
                                       batch_size=cfg.extract.batch_size, workers=_workers(cfg, splits[0]),
                                       progress=progress, desc=class_id, warn=lambda m: say(f"warning: {m}", progress))
            for i, writer, sampler in zip(chosen, writers, samplers):
                _finish(writer, log, sampler, todo[paths[i]], cuts[i][2], cuts[i][1], cfg, class_id, files, label)

    return ClassJob(class_id, paths[0], makers[0], work, more=tuple(zip(paths[1:], makers[1:])))
