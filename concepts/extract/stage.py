"""Stage 1, orchestration: ``IMAGES/<class>/* -> RUN/activations/<class>.h5`` for every selected class.

Settings come from :class:`~concepts.settings.RunConfig` (sections ``data``, ``model``, ``extract``); the per-class
loop (resume, staleness, atomic writes, skipped classes) is :func:`concepts.runner.run_classes`. A class's file is
stale when its image list changed since it was written (images added, removed or resized on disk).
"""
from __future__ import annotations

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
from ..schema import ActivationsWriter, config_hash, identity_attributes, stage_path
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


def model_request(cfg: RunConfig) -> dict[str, Any]:
    """The model asked for, as the settings say it (checked without loading the model by ``concepts run``)."""
    m = cfg.model
    checkpoint = str(Path(m.checkpoint).expanduser().resolve()) if m.checkpoint else None
    request = {"name": m.name, "checkpoint": checkpoint, "pretrained": bool(m.pretrained), "layer": m.layer}
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
            split, info = models.get(cfg.model.name, cfg.model.checkpoint, cfg.model.layer, cfg.model.pretrained,
                                     None if cfg.model.device == "auto" else cfg.model.device)
        head = resolve_head(cfg.model.head, split, info)
        _check_model(split, info, cfg, progress, head)
        check = SignCheck(cfg.factorize.method, progress)
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
            jobs.append(_job(cfg, head.split, info, cls.class_id, cls.files, label, progress, head, check))
        report = run_classes("extract", jobs, overwrite=overwrite, progress=progress, desc="extract")
    report.skipped.update(empty)
    if progress and not report.written and report.done:
        say(f"extract: all {len(report.done)} classes already done in {cfg.out}; nothing to do", progress)
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


def _job(cfg: RunConfig, split, info, class_id: str, files: list[Path], label, progress: bool,
         head: ResolvedHead | None = None, check=None) -> ClassJob:
    path = stage_path(cfg.out, "extract", class_id)

    def wanted() -> Wanted:
        config = {"stage": "extract", "settings": wanted_settings(cfg), "request": model_request(cfg),
                  "model": model_identity(info), "class_index": label.index, "class_index_source": label.source}
        if head is not None and head_identity(head) is not None:
            config["head"] = head_identity(head)
        return Wanted(config, config_hash(config), {"images": {"creation_id": image_listing(files),
                                                               "config_hash": ""}})

    def work(wanted: Wanted) -> None:
        sampler = Sampler(split, cfg.extract.mode, cfg.extract.patch_size)
        workers = default_workers(split.device) if cfg.extract.workers is None else int(cfg.extract.workers)
        shape = dict(n_images=len(files), n_positions=split.grid[0] * split.grid[1], n_channels=split.n_channels,
                     n_prefix=split.n_prefix if split.layout == "tokens" else 0, crops=cfg.extract.mode == "crops",
                     dtype=DTYPES[cfg.extract.dtype], compression=cfg.extract.compression,
                     expected_rows=len(sampler.boxes) * min(len(files), cfg.extract.map_images or len(files)),
                     n_mapped=min(len(files), cfg.extract.map_images or len(files)))
        with ActivationsWriter(path, **shape) as writer:
            mapped = map_selection(len(files), cfg.extract.map_images)
            log = extract_class(split, files, writer, sampler, precision=cfg.model.precision,
                                batch_size=cfg.extract.batch_size, workers=workers, progress=progress,
                                desc=class_id, warn=lambda m: say(f"warning: {m}", progress), first_batch=check,
                                mapped=mapped, scores=head is None or head.scores)
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

    return ClassJob(class_id, path, wanted, work)
