"""``concepts probe RUN``, orchestration: features of every class, the fit, ``RUN/probe/probe.npz``.

Like a stage's class file, the probe is not refitted when it was made with the same settings from the same
activations (``done``); new activations make it ``stale`` (refitted); other settings are refused unless
``overwrite``. A new probe makes the run's importance files stale: they are recomputed for its logits.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConceptsError, ConfigMismatchError
from ..runner import say
from ..runtime import thread_limit
from ..schema import RunFolder, config_hash
from ..schema.lineage import settings_diff
from ..schema.locks import artefact_lock
from ..schema.probe import ProbeFile, new_probe_meta, probe_path, read_probe, write_probe
from ..settings import RunConfig, stage_config
from ..text import plural
from .fitting import fit_probe, pooled_features

MODEL_KEYS = ("model", "weights", "weights_sha256", "layer", "preprocessing")


@dataclass
class ProbeReport:
    """What ``concepts probe`` did: the file, whether it was (re)fitted, and the probe's figures."""

    path: Path
    status: str  # written | stale | done
    accuracy: float
    n_train: int
    n_test: int
    per_class: dict[str, dict] = field(default_factory=dict)

    def summary(self) -> str:
        acc = "n/a (no image could be held out)" if self.accuracy != self.accuracy else f"{100 * self.accuracy:.1f}%"
        what = {"done": "already done", "stale": "refitted (new activations)", "written": "written"}[self.status]
        return (f"probe: {plural(len(self.per_class), 'class')}, {plural(self.n_train, 'image')} fitted, {self.n_test} "
                f"held out; "
                f"held-out accuracy {acc}; {what}: {self.path} (the later stages explain its logits)")


def probe_run(run: str | os.PathLike, *, config: RunConfig | None = None, models=None, overwrite: bool = False,
              progress: bool = True, **settings: Any) -> ProbeReport:
    """Train the run's probe (see the module docstring); ``settings``: keywords of the ``probe`` section,
    ``classes``, ``device`` and ``threads``."""
    from ..models import ModelCache

    cfg = stage_config("probe", config, **settings)
    folder = RunFolder(run)
    classes = folder.input_classes("extract", cfg.data.classes)
    attrs = {c: _attrs(folder, c) for c in classes}
    model = _one_model(attrs)
    wanted = {"stage": "probe", **cfg.probe.hashed(), "model": model, "classes": classes}
    inputs = {c: str(a.get("creation_id", "")) for c, a in attrs.items()}
    path = probe_path(folder.path)
    with artefact_lock(path, say=lambda m: say(m, progress)):
        status = _status(path, wanted, inputs, overwrite)
        if status == "done":
            probe = read_probe(path)
            return ProbeReport(path, "done", float(probe.meta.get("accuracy", float("nan"))),
                               int(probe.meta.get("n_train", 0)), int(probe.meta.get("n_test", 0)),
                               probe.meta.get("per_class", {}))
        models = models or ModelCache(None if cfg.model.device == "auto" else cfg.model.device)
        with thread_limit(cfg.executor.threads):
            features = _features(folder, classes, attrs, models, cfg.probe.batch_size)
        p = cfg.probe
        fit = fit_probe(features, holdout=p.holdout, regularization=p.regularization, max_iter=p.max_iter,
                        seed=p.seed)
        names = [str(attrs[c].get("class_name") or c) for c in classes]
        meta = new_probe_meta(config=wanted, config_hash=config_hash(wanted), inputs=inputs, model=model,
                              settings=cfg.probe.hashed(), accuracy=fit.accuracy, n_train=fit.n_train,
                              n_test=fit.n_test, per_class=fit.per_class,
                              features=f"pooled features of {model['model']} cut at {model['layer']}: what its "
                                       "classifier reads")
        write_probe(path, ProbeFile(fit.weight, fit.bias, classes, names, meta))
    return ProbeReport(path, "stale" if status == "stale" else "written", fit.accuracy, fit.n_train, fit.n_test,
                       fit.per_class)


def _attrs(folder: RunFolder, class_id: str) -> dict[str, Any]:
    with folder.activations(class_id) as cache:
        return dict(cache.attrs)


def _one_model(attrs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    models = {config_hash({k: a.get(k) for k in MODEL_KEYS}): {k: a.get(k) for k in MODEL_KEYS}
              for a in attrs.values()}
    if len(models) > 1:
        raise ConceptsError("the run's classes were extracted with different models or cuts; a probe reads one "
                            "model's features (re-extract them alike, or pass --classes)")
    return next(iter(models.values()))


def _status(path: Path, wanted: dict[str, Any], inputs: dict[str, str], overwrite: bool) -> str:
    if overwrite or not path.is_file():
        return "todo"
    meta = read_probe(path).meta
    if meta.get("config_hash") != config_hash(wanted):
        raise ConfigMismatchError(f"{path} was made with other settings ({settings_diff(meta.get('config'), wanted)})"
                                  "; pass --overwrite to refit it")
    return "done" if meta.get("inputs") == inputs else "stale"


def _features(folder: RunFolder, classes: list[str], attrs, models, batch_size: int):
    from ..heads.attach import headed_split
    from ..heads.resolve import has_classifier

    split = models.for_artefact(attrs[classes[0]])
    features_split = headed_split(split, None) if has_classifier(split.model) else split
    out = {}
    for class_id in classes:
        with folder.activations(class_id) as cache:
            if len(cache.mapped) == 0:
                raise ConceptsError(f"class {class_id!r} has no readable image; leave it out with --classes")
            out[class_id] = pooled_features(features_split, cache, batch_size)
    return out
