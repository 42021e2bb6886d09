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
from ..datasets.labels import ClassLabel, imagenet_name_of
from ..errors import ClassSkipped, ConceptsError
from ..heads.resolve import ResolvedHead, resolve_head
from ..heads.spec import HeadSpec
from ..runner import ClassJob, StageReport, run_classes, say
from ..runtime import autocast_dtype, cpu_has_native_bf16, default_workers, thread_limit
from ..schema import ActivationsWriter, RunFolder, config_hash, identity_attributes, stage_path
from ..schema.lineage import Wanted
from ..settings import RunConfig, stage_config
from ..text import plural
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
    request = {"name": m.name, "checkpoint": checkpoint, "pretrained": bool(m.pretrained), "layer": layer}
    head = HeadSpec.parse(m.head)
    if not head.default:  # absent for the model's own classifier: the runs made before heads existed still match
        request["head"] = head.request()
    return request


def head_identity(head: ResolvedHead) -> dict[str, Any] | None:
    """What identifies the head whose logits the file records (enters the config hash; None: the model's own)."""
    if head.request == "model":
        return None
    return {"request": head.request, "sha256": head.provenance.get("head_sha256")}


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
        precision=cfg.model.precision, compression=cfg.extract.compression,
        map_images=cfg.extract.map_images)


def _check_model(split, info, cfg: RunConfig, progress: bool, head: ResolvedHead | None = None) -> None:
    if head is not None and head.kind == "none" and head.request == "model":
        say(f"warning: model {info['model']!r} has no classifier head: extracting without class scores (as "
            "--head none); train one with `concepts probe RUN`, or pass --head probe:FILE | zeroshot:PROMPTS", progress)
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
        head = resolve_head(cfg.model.head, split, info)
        _check_model(split, info, cfg, progress, head)
        check = SignCheck(cfg.factorize.method, progress)
        cuts = _cuts(head.split, info, cfg, progress)
        jobs, empty = [], {}
        for cls in found:
            if not cls.files:
                empty[cls.class_id] = "no image files"
                say(f"warning: extract: class {cls.class_id!r} has no image files; skipped", progress)
                continue
            try:
                label = class_label(cls.class_id, head, table)
            except ClassSkipped as exc:
                empty[cls.class_id] = str(exc)
                say(f"warning: extract: class {cls.class_id!r} skipped: {exc}", progress)
                continue
            if len(cuts) == 1:
                jobs.append(_job(cfg, cuts[0][1], cuts[0][2], cls.class_id, cls.files, label, progress, head, check,
                                 path=cuts[0][3](cls.class_id)))
            else:
                jobs.append(_layers_job(cfg, cuts, cls.class_id, cls.files, label, progress, head, check))
        report = run_classes("extract", jobs, overwrite=overwrite, progress=progress, desc="extract")
    report.skipped.update(empty)
    if progress and not report.written and report.done:
        say(f"extract: all {plural(len(report.done), 'class')} already done in {cfg.out}; nothing to do", progress)
    return report


def class_label(class_id: str, head: ResolvedHead, table) -> ClassLabel:
    """The logit a class is explained for: the head's own class list (probe, zeroshot), none, or the model's."""
    if head.kind == "none":
        return ClassLabel(-1, imagenet_name_of(class_id), "none")
    index = head.class_index(class_id)
    if index is not None:
        return ClassLabel(index, head.class_name(class_id), "head")
    return resolve_label(class_id, int(head.split.model.num_classes), table)


def map_selection(n_files: int, map_images: int | None) -> np.ndarray | None:
    """Which of a class's files keep their maps: ``map_images`` of them evenly spaced in file order (None: all)."""
    if map_images is None or map_images >= n_files:
        return None
    chosen = np.zeros(n_files, bool)
    chosen[np.unique(np.round(np.linspace(0, n_files - 1, int(map_images))).astype(int))] = True
    return chosen


class SignCheck:
    """Warns once, on the first batch of the first class extracted, when the activations are signed and the
    configured concept method needs non-negative ones (NMF): its fit would refuse every class after extraction."""

    def __init__(self, method: str, progress: bool):
        from ..factorize.registry import accepts_signed, canonical_method

        try:
            self.method = canonical_method(method)
            self.active = not accepts_signed(self.method)
        except ConceptsError:  # an unknown method is reported by the factorize stage
            self.method, self.active = method, False
        self.progress = progress

    def __call__(self, positions) -> None:
        if not self.active:
            return
        self.active = False
        low = float(positions.min())
        if low < 0:
            say(f"warning: extract: the activations at this cut are signed (smallest {low:.3g} in the first batch) "
                f"but the concept method {self.method!r} needs non-negative ones, and factorize will refuse them; "
                "use --method semi_nmf (or pca, ica, kmeans, dictionary) or cut the model at a ReLU'd layer",
                self.progress)


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


def _wanted(cfg: RunConfig, info, layer, label, files: list[Path], head: ResolvedHead | None) -> Wanted:
    config = {"stage": "extract", "settings": wanted_settings(cfg), "request": model_request(cfg, layer),
              "model": model_identity(info), "class_index": label.index, "class_index_source": label.source}
    if head is not None and head_identity(head) is not None:
        config["head"] = head_identity(head)
    return Wanted(config, config_hash(config), {"images": {"creation_id": image_listing(files), "config_hash": ""}})


def _n_mapped(cfg: RunConfig, n_files: int) -> int:
    return min(n_files, cfg.extract.map_images or n_files)


def _writer(cfg: RunConfig, split, sampler: Sampler, path: Path, n_images: int) -> ActivationsWriter:
    return ActivationsWriter(path, n_images=n_images, n_positions=split.grid[0] * split.grid[1],
                             n_channels=split.n_channels, n_prefix=split.n_prefix if split.layout == "tokens" else 0,
                             crops=cfg.extract.mode == "crops", dtype=DTYPES[cfg.extract.dtype],
                             compression=cfg.extract.compression,
                             expected_rows=len(sampler.boxes) * _n_mapped(cfg, n_images),
                             n_mapped=_n_mapped(cfg, n_images))


def _finish(writer, log, sampler: Sampler, wanted: Wanted, info, split, cfg: RunConfig, class_id, files, label,
            head: ResolvedHead | None, mapped) -> None:
    """The class index (the model's most frequent prediction when no label says it) and the file's tables."""
    if not log.ok.any():
        raise ClassSkipped("no readable image")
    index = label.index
    if index is None:  # the model's most frequent prediction on the class (recorded as such)
        index = int(Counter(log.logits[log.ok].argmax(1).tolist()).most_common(1)[0][0])
    attrs = {**identity_attributes("extract"), **wanted.attributes(), **provenance(info, split, cfg),
             **(head.attributes() if head is not None else {}),
             "class_id": class_id, "class_name": label.name, "class_index": int(index),
             "class_index_source": label.source, "n_images": len(files), "n_skipped": int((~log.ok).sum())}
    writer.finish(rows=sampler.row_table(log.row_image), images=log.table(files, index, mapped), attrs=attrs)


def _workers(cfg: RunConfig, split) -> int:
    return default_workers(split.device) if cfg.extract.workers is None else int(cfg.extract.workers)


def _job(cfg: RunConfig, split, info, class_id: str, files: list[Path], label, progress: bool,
         head: ResolvedHead | None = None, check=None, *, path: Path | None = None) -> ClassJob:
    path = path or stage_path(cfg.out, "extract", class_id)

    def wanted() -> Wanted:
        return _wanted(cfg, info, cfg.model.main_layer, label, files, head)

    def work(wanted: Wanted) -> None:
        sampler = Sampler(split, cfg.extract.mode, cfg.extract.patch_size)
        mapped = map_selection(len(files), cfg.extract.map_images)
        with _writer(cfg, split, sampler, path, len(files)) as writer:
            log = extract_class(split, files, writer, sampler, precision=cfg.model.precision,
                                batch_size=cfg.extract.batch_size, workers=_workers(cfg, split), progress=progress,
                                desc=class_id, warn=lambda m: say(f"warning: {m}", progress), first_batch=check,
                                mapped=mapped, scores=head is None or head.scores)
            _finish(writer, log, sampler, wanted, info, split, cfg, class_id, files, label, head, mapped)

    return ClassJob(class_id, path, wanted, work)


def _layers_job(cfg: RunConfig, cuts: list[tuple], class_id: str, files: list[Path], label,
                progress: bool, head: ResolvedHead | None = None, check=None) -> ClassJob:
    """One class, several layers: one forward pass writes every layer's file that is not done."""
    from ..models.taps import LayerTap
    from .layers import extract_class_layers

    paths = [where(class_id) for _, _, _, where in cuts]
    makers = [lambda asked=asked, cut_info=cut_info: _wanted(cfg, cut_info, asked, label, files, head)
              for asked, _, cut_info, _ in cuts]

    def work(todo: dict[Path, Wanted]) -> None:
        chosen = [i for i, p in enumerate(paths) if p in todo]
        splits = [cuts[i][1] for i in chosen]
        samplers = [Sampler(s, cfg.extract.mode, cfg.extract.patch_size) for s in splits]
        mapped = map_selection(len(files), cfg.extract.map_images)
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(_writer(cfg, s, m, paths[i], len(files)))
                       for i, s, m in zip(chosen, splits, samplers)]
            log = extract_class_layers(LayerTap(splits), files, writers, samplers, precision=cfg.model.precision,
                                       batch_size=cfg.extract.batch_size, workers=_workers(cfg, splits[0]),
                                       progress=progress, desc=class_id, warn=lambda m: say(f"warning: {m}", progress),
                                       first_batch=check, mapped=mapped, scores=head is None or head.scores)
            for i, writer, sampler in zip(chosen, writers, samplers):
                _finish(writer, log, sampler, todo[paths[i]], cuts[i][2], cuts[i][1], cfg, class_id, files, label,
                        head, mapped)

    return ClassJob(class_id, paths[0], makers[0], work, more=tuple(zip(paths[1:], makers[1:])))
