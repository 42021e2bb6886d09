"""Stage artefacts made without a model, through the schema's writers, for the tests of the stages that read them.

One builder per stage file: :func:`write_activations` (patches or crops mode), :func:`write_concepts`,
:func:`write_importance`. Keyword ``attrs`` override the default attributes (model 'fake', class name = class id).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from concepts.schema import (ActivationsWriter, ConceptsWriter, ImageTable, ImportanceRecord, MethodImportance,
                             RowTable, config_hash, identity_attributes, stage_path)
from concepts.schema import write_importance as _write_importance


def write_activations(run, class_id, maps, *, skipped=None, class_index=3, image_size=224, paths=None, config=None,
                      rows=None, boxes=None, logit=None, sha256=None, widths=None, heights=None, predicted=None,
                      **attrs) -> Path:
    """A ``activations/<class>.h5``. ``maps`` is (images, positions, channels) on a square grid. Without ``rows``
    it is a patches-mode file (rows = the kept images' positions); with ``rows`` (R, D) and ``boxes`` (per image)
    a crops-mode file whose rows are ``rows``."""
    maps = np.asarray(maps)
    n_images, n_pos, dim = maps.shape
    skipped = np.zeros(n_images, bool) if skipped is None else np.asarray(skipped, bool)
    kept = np.flatnonzero(~skipped)
    side = int(round(np.sqrt(n_pos)))
    cfg = config or {"mode": "patches" if rows is None else "crops"}
    path = stage_path(run, "extract", class_id)
    crops = rows is not None
    if crops:
        boxes = np.asarray(boxes, np.int32)
        positions = np.stack(np.divmod(np.arange(len(boxes)), max(1, int(round(np.sqrt(len(boxes)))))), 1)
    else:
        boxes = np.zeros((n_pos, 4), np.int32)
        positions = np.array([(i, j) for i in range(side) for j in range(side)], np.int32)
    with ActivationsWriter(path, n_images=n_images, n_positions=n_pos, n_channels=dim, crops=crops,
                           dtype=maps.dtype) as writer:
        writer.write_maps(list(range(n_images)), maps)
        if crops:
            writer.append_rows(np.asarray(rows))
        values = dict(identity_attributes("extract"), class_id=class_id, class_name=class_id,
                      class_index=class_index, class_index_source="test", model="fake", weights="none",
                      weights_sha256="", layer="features", layout="spatial", grid=[side, side], n_prefix=0,
                      preprocessing={"input_size": image_size}, mode="crops" if crops else "patches",
                      patch_size=0, stride=0, dtype=str(maps.dtype), config=cfg, config_hash=config_hash(cfg),
                      inputs={})
        values.update(attrs)
        writer.finish(
            rows=RowTable(image=np.repeat(kept, len(boxes)), box=np.tile(boxes, (len(kept), 1)),
                          position=np.tile(positions, (len(kept), 1))),
            images=ImageTable(path=paths or [f"{class_id}/{i}.jpg" for i in range(n_images)],
                              sha256=sha256 or ["0" * 64] * n_images, error=["unreadable" if s else "" for s in skipped],
                              width=np.full(n_images, image_size) if widths is None else widths,
                              height=np.full(n_images, image_size) if heights is None else heights,
                              skipped=skipped, logit=np.zeros(n_images) if logit is None else logit,
                              predicted=np.full(n_images, class_index) if predicted is None else predicted),
            attrs=values)
    return path


# the name the factorize and importance tests use
write_patches_activations = write_activations


def write_concepts(run, class_id, components, coefficients, **attrs) -> Path:
    """A ``concepts/<class>.h5`` with the given bank and coefficients (method 'nmf' unless ``attrs`` say)."""
    components = np.asarray(components, np.float32)
    coefficients = np.asarray(coefficients, np.float32)
    path = stage_path(run, "factorize", class_id)
    with ConceptsWriter(path, n_rows=len(coefficients), n_concepts=len(components)) as writer:
        writer.write_components(components)
        writer.write_coefficients(0, coefficients)
        values = dict(identity_attributes("factorize"), class_id=class_id, class_name=class_id, method="nmf",
                      n_concepts=len(components), seed=0, params={}, rel_error=0.4, config={},
                      config_hash="fake-concepts", source_config_hash="fake", model="fake", layer="features",
                      inputs={})
        values.update(attrs)
        writer.finish(state={}, attrs=values)
    return path


def write_importance(run, class_id, methods: dict[str, dict[str, np.ndarray]], *, presence, contribution=None,
                     kept=None, fidelity_attrs=None, **attrs) -> Path:
    """A ``importance/<class>.h5``: ``methods[name]`` holds ``per_image``, ``class_importance``, ``share``,
    optionally the intervals and ``attrs`` (the method group's attributes); ``presence`` (n_images, r, H, W)."""
    n_images, r = presence.shape[:2]
    kept = np.ones(n_images, bool) if kept is None else np.asarray(kept, bool)
    records = {}
    for name, arrays in methods.items():
        nan = np.full(r, np.nan, np.float32)
        records[name] = MethodImportance(
            method=name, per_image=arrays["per_image"], class_importance=arrays["class_importance"],
            share=arrays["share"], ci_low=arrays.get("ci_low", nan), ci_high=arrays.get("ci_high", nan),
            share_ci_low=arrays.get("share_ci_low", nan), share_ci_high=arrays.get("share_ci_high", nan),
            ranking=np.argsort(-np.asarray(arrays["class_importance"]), kind="stable"),
            attrs={"method": name, **arrays.get("attrs", {})})
    values = dict(identity_attributes("importance"), class_id=class_id, config={}, config_hash="fake-importance",
                  inputs={}, methods=list(methods))
    values.update(attrs)
    return _write_importance(stage_path(run, "importance", class_id), ImportanceRecord(
        attrs=values, kept=kept, methods=records, fidelity_attrs=dict(fidelity_attrs or {}), fidelity={},
        presence=presence, contribution=presence if contribution is None else contribution))
