"""Stage 3: concept importance, maps and fidelity for every class of a run.

Reads ``RUN/activations/<class>.h5`` (the full-image positions ``maps``, also for crops-mode
runs, as CRAFT does) and ``RUN/concepts/<class>.h5``, rebuilds the model split recorded in the
activations' provenance, and writes ``RUN/importance/<class>.h5`` (layout in
docs/ARCHITECTURE.md) atomically; finished classes are skipped on a rerun, a different
configuration is refused unless ``overwrite``.

Residual: with ``residual=True`` (default) the edited activations are ``(U ⊙ M) W + (A - UW)``, so
that with every concept kept the model sees its own activations and the importances explain the
model's real logit; with ``residual=False`` they are ``(U ⊙ M) W`` (CRAFT), plus the offset of
centred methods (PCA) in both cases.  The reconstruction fidelity of the split (class logit of
h(UW) against h(A)) is reported either way.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from ..artefacts import (
    atomic_h5,
    base_attributes,
    config_hash,
    existing_status,
    read_attrs,
    stage_path,
    write_attrs,
)
from ..errors import ConceptsError
from ..models import SplitCache
from ..runtime import pick_device
from .fidelity import c_deletion, c_insertion, c_mufidelity, reconstruction_parts, summarize_reconstruction
from .maps import contribution_maps, presence_maps
from .methods import METHODS, GradientInput, ImportanceResult, aggregate, make_method
from .perturb import ConceptScorer

PROVENANCE = ("model", "weights", "weights_sha256", "checkpoint", "layer", "layout", "grid", "n_prefix",
              "preprocessing", "mode", "patch_size", "stride", "class_index_source")
FLOAT16_MAX = 65000.0


def _methods(methods: Iterable[str] | str | None) -> list[str]:
    if methods is None:
        return list(METHODS)
    if isinstance(methods, str):
        methods = [methods]
    out: list[str] = []
    for item in methods:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in METHODS:
                raise ConceptsError(f"unknown importance method {name!r}; choose from {', '.join(METHODS)}")
            if name not in out:
                out.append(name)
    if not out:
        raise ConceptsError("no importance method given")
    return out


def _source_hash(path: Path) -> str:
    with h5py.File(path, "r") as handle:
        value = handle.attrs.get("config_hash", "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _blocks(kept: np.ndarray, size: int) -> list[np.ndarray]:
    size = max(1, int(size))
    return [kept[i : i + size] for i in range(0, len(kept), size)]


def importance_class(
    run: str | os.PathLike,
    class_id: str,
    *,
    methods=("sobol", "gradient", "occlusion"),
    designs: int = 32,
    sampler: str = "halton",
    estimator: str = "jansen",
    seed: int = 0,
    residual: bool = True,
    exact: str = "auto",
    score: str = "logit",
    steps: int | None = None,
    n_subsets: int = 128,
    correlation: str = "spearman",
    confidence: float = 0.95,
    batch_size: int = 64,
    image_block: int = 256,
    device=None,
    overwrite: bool = False,
    progress: bool = True,
    _splits: SplitCache | None = None,
) -> Path:
    """Importance, maps and fidelity of one class; returns the path of ``RUN/importance/<class>.h5``.

    Images are processed ``image_block`` at a time (activations and residual of one block in memory;
    the perturbations themselves go ``batch_size`` at a time through the head): a first pass gives
    the coefficients, per-image importances, maps and reconstruction logits, a second pass the
    fidelity curves for the class-level rankings (reusing the first pass's coefficients).
    """
    run = Path(run)
    methods = _methods(methods)
    concepts_path = stage_path(run, "factorize", class_id)
    if not concepts_path.is_file():
        raise ConceptsError(f"no concepts for class {class_id!r} in {run} (run `concepts factorize` first)")
    settings = {
        "methods": methods, "designs": int(designs), "sampler": sampler, "estimator": estimator, "seed": int(seed),
        "residual": bool(residual), "exact": str(exact), "score": score, "steps": steps,
        "n_subsets": int(n_subsets), "correlation": correlation, "confidence": float(confidence),
    }
    config = dict(settings, source_config_hash=_source_hash(concepts_path))
    wanted = config_hash(config)
    out = stage_path(run, "importance", class_id)
    if existing_status(out, wanted, overwrite) == "done":
        return out

    from ..extract.cache import open_activations
    from ..factorize import load_concepts

    device = pick_device(device)
    splits = _splits or SplitCache(device)

    def load_block(cache, idx, U=None):
        """Activations (b, N, D), coefficients (b, N, r), residual or centring offset, prefix of images ``idx``;
        ``U`` (b, N, r): coefficients already computed for these images (else ``transform`` of the activations)."""
        A = cache.maps(idx)
        b, N, D = A.shape
        flat = A.reshape(-1, D)
        U = np.asarray(estimator_.transform(flat), dtype=np.float32) if U is None else U.reshape(-1, r)
        UW = U @ W
        if residual:
            res = flat - UW
        else:
            offset = np.asarray(estimator_.inverse_transform(U), dtype=np.float32) - UW  # non-zero for centred methods
            res = offset if np.abs(offset).max(initial=0.0) > 0 else None
        res = None if res is None else res.reshape(b, N, D)
        return A, U.reshape(b, N, r), res, cache.prefix(idx)

    with open_activations(run, class_id) as cache:
        attrs = dict(cache.attrs)
        split = splits.get(attrs)
        device = split.device
        head = split.h_positions
        linear = split.linear_head()
        estimator_ = load_concepts(run, class_id, device=device)
        W = np.asarray(estimator_.components_, dtype=np.float32)
        r = W.shape[0]
        common = dict(exact=exact, batch_size=batch_size, device=device, confidence=confidence, progress=False)
        instances = {name: make_method(name, designs=designs, sampler=sampler, estimator=estimator, seed=seed,
                                       **common) for name in methods}
        kept = cache.kept
        n_images = cache.n_images
        class_index = cache.class_index
        grid = tuple(cache.grid)
        N = cache.n_positions
        if len(kept) == 0:
            raise ConceptsError(f"class {class_id!r} has no readable images")
        blocks = _blocks(kept, image_block)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=2 * len(kept), desc=f"importance {class_id}", unit="img", leave=False)
        per_image = {name: [] for name in methods}
        exact_used: dict[str, bool] = {}
        settings_used: dict[str, dict] = {}
        presence, contribution, recon_parts, coefficients = [], [], [], []
        grad_exact = None
        # pass 1: importances, maps, reconstruction fidelity
        for idx in blocks:
            A, U, res, prefix = load_block(cache, idx)
            coefficients.append(U)
            grad_positions = None
            for name, method in instances.items():
                result = method.attribute(U, W, head, class_index, linear_head=linear, residual=res, prefix=prefix)
                per_image[name].append(result.per_image)
                exact_used[name], settings_used[name] = result.exact, result.settings
                if name == "gradient":
                    grad_positions, grad_exact = result.positions, result.exact
            if grad_positions is None:
                extra = GradientInput(**common).attribute(U, W, head, class_index, linear_head=linear, residual=res,
                                                          prefix=prefix)
                grad_positions, grad_exact = extra.positions, extra.exact
            presence.append(np.clip(presence_maps(U, grid), -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16))
            contribution.append(np.clip(contribution_maps(grad_positions, grid), -FLOAT16_MAX, FLOAT16_MAX)
                                .astype(np.float16))
            recon_parts.append(reconstruction_parts(A, U, W, head, class_index, prefix=prefix, batch_size=batch_size,
                                                    device=device))
            if bar is not None:
                bar.update(len(idx))
        results = {}
        for name in methods:
            values = np.concatenate(per_image[name])
            results[name] = ImportanceResult(name, values, *aggregate(values, confidence), exact=exact_used[name],
                                             settings=settings_used[name])
        recon_fid = summarize_reconstruction({k: np.concatenate([p[k] for p in recon_parts]) for k in recon_parts[0]})
        # pass 2: fidelity of each method's class-level ranking (and per-image importances for muFidelity)
        use_linear = linear if str(exact) not in ("off", "False") else None
        curves: dict[str, dict[str, list]] = {name: {"deletion": [], "insertion": [], "del_auc": [], "ins_auc": [],
                                                     "mu": []} for name in methods}
        offset = 0
        x = None
        for idx, U in zip(blocks, coefficients):
            A, U, res, prefix = load_block(cache, idx, U)  # pass 1's coefficients: no second transform
            scorer = ConceptScorer(U, W, head, class_index, linear_head=use_linear, residual=res, prefix=prefix,
                                   score=score, batch_size=batch_size, device=device)
            for name, result in results.items():
                deletion = c_deletion(scorer, result.class_importance, steps=steps)
                insertion = c_insertion(scorer, result.class_importance, steps=steps)
                mu = c_mufidelity(scorer, result.per_image[offset : offset + len(idx)], n_subsets=n_subsets,
                                  correlation=correlation, seed=seed)
                c = curves[name]
                c["deletion"].append(deletion["curves"])
                c["insertion"].append(insertion["curves"])
                c["del_auc"].append(deletion["per_image"])
                c["ins_auc"].append(insertion["per_image"])
                c["mu"].append(mu["per_image"])
                x = deletion["x"]
            offset += len(idx)
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
    n = len(kept)
    fid_values, fid_curves = {}, {}
    for name, c in curves.items():
        mu = np.concatenate(c["mu"])
        fid_values[name] = {
            "c_deletion": float(np.concatenate(c["del_auc"]).mean()),
            "c_insertion": float(np.concatenate(c["ins_auc"]).mean()),
            "c_mufidelity": float(np.nanmean(mu)) if np.isfinite(mu).any() else float("nan"),
        }
        fid_curves[name] = {"x": x, "deletion_curve": np.concatenate(c["deletion"]).mean(0),
                            "insertion_curve": np.concatenate(c["insertion"]).mean(0), "mufidelity_per_image": mu}
    pres = np.concatenate(presence)
    contrib = np.concatenate(contribution)

    def full(per_kept: np.ndarray, fill=np.nan) -> np.ndarray:
        arr = np.full((n_images, *per_kept.shape[1:]), fill, dtype=per_kept.dtype)
        arr[kept] = per_kept
        return arr

    with atomic_h5(out) as handle:
        root = base_attributes()
        root.update({k: attrs[k] for k in PROVENANCE if k in attrs})
        root.update(
            stage="importance", class_id=attrs.get("class_id", class_id), class_name=attrs.get("class_name", class_id),
            class_index=int(class_index), n_images=int(n_images), n_kept=int(n), n_concepts=int(r),
            n_positions=int(N), grid=list(grid), concepts_method=estimator_.attrs.get("method"),
            linear_head=linear is not None, device=str(device), config=config, config_hash=wanted,
            source_config_hash=config["source_config_hash"], **settings,
        )
        write_attrs(handle, root)
        images = handle.create_group("images")
        images.create_dataset("kept", data=np.isin(np.arange(n_images), kept))
        images.create_dataset("index", data=kept.astype(np.int32))
        for name, result in results.items():
            group = handle.create_group(name)
            group.create_dataset("per_image", data=full(result.per_image.astype(np.float32)))
            for key in ("class_importance", "share", "ci_low", "ci_high", "share_ci_low", "share_ci_high"):
                group.create_dataset(key, data=np.asarray(getattr(result, key), dtype=np.float32))
            group.create_dataset("ranking", data=result.ranking().astype(np.int32))
            params = {k: v for k, v in result.settings.items() if k not in ("progress", "batch_size")}
            write_attrs(group, dict(method=name, exact=result.exact, residual=bool(residual),
                                    class_index=int(class_index), settings=params))
        maps = handle.create_group("maps")
        maps.create_dataset("presence", data=full(pres, 0))
        maps.create_dataset("contribution", data=full(contrib, 0))
        write_attrs(maps, {"grid": list(grid), "input_size": int(getattr(split, "input_size", 0) or 0),
                           "contribution": "gradient x input of the class logit per position",
                           "exact": bool(grad_exact)})
        fid = handle.create_group("fidelity")
        flat_attrs: dict[str, Any] = {f"reconstruction_{k}": v for k, v in recon_fid.items()}
        for name, values in fid_values.items():
            flat_attrs.update({f"{name}_{k}": v for k, v in values.items()})
            group = fid.create_group(name)
            for key, arr in fid_curves[name].items():
                group.create_dataset(key, data=np.asarray(arr, dtype=np.float32))
        flat_attrs.update(score=score, residual=bool(residual), steps=steps if steps is not None else r,
                          n_subsets=int(n_subsets), correlation=correlation,
                          ranking="class-level importance (deletion/insertion), per-image importance (mufidelity)")
        write_attrs(fid, flat_attrs)
    return out


def importance_run(
    run: str | os.PathLike,
    *,
    methods=("sobol", "gradient", "occlusion"),
    designs: int = 32,
    classes: Iterable[str] | None = None,
    device=None,
    overwrite: bool = False,
    progress: bool = True,
    split=None,
    **params,
) -> list[Path]:
    """Stage 3 for every class with concepts (or ``classes``); returns the written/kept file paths.

    ``params`` go to :func:`importance_class`: sampler, estimator, seed, residual, exact, score,
    steps, n_subsets, correlation, confidence, batch_size, image_block.  ``split``: an already loaded
    :class:`~concepts.models.ModelSplit` of the run's model (else rebuilt from the provenance).
    """
    run = Path(run)
    if not run.is_dir():
        raise ConceptsError(f"run folder not found: {run}")
    from ..extract.cache import list_classes

    available = list_classes(run, stage="factorize")
    if classes:
        wanted = [c for item in classes for c in str(item).split(",") if c]
        missing = [c for c in wanted if c not in available]
        if missing:
            raise ConceptsError(f"no concepts for class(es) {', '.join(missing)} in {run} (run `concepts factorize`)")
        todo = wanted
    else:
        todo = available
    if not todo:
        raise ConceptsError(f"no concept files in {run}/concepts (run `concepts factorize` first)")
    methods = _methods(methods)
    splits = SplitCache(pick_device(device), split)
    iterator = todo
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc="importance", unit="class")
    paths = []
    for class_id in iterator:
        paths.append(importance_class(run, class_id, methods=methods, designs=designs, device=device,
                                      overwrite=overwrite, progress=progress, _splits=splits, **params))
    return paths


def load_importance(run: str | os.PathLike, class_id: str) -> dict[str, Any]:
    """Read ``RUN/importance/<class>.h5`` into a dict.

    Keys: ``attrs`` (root attributes), ``methods`` (list), one dict per method (``per_image``,
    ``class_importance``, ``share``, ``ci_low``, ``ci_high``, ``share_ci_low``, ``share_ci_high``,
    ``ranking``, ``attrs``), ``maps`` (``presence``, ``contribution`` as float32, ``attrs``),
    ``fidelity`` (attributes, plus one dict of curves per method) and ``images`` (``kept``, ``index``).
    """
    path = stage_path(run, "importance", class_id)
    if not path.is_file():
        raise ConceptsError(f"no importance for class {class_id!r} in {run} (run `concepts importance` first)")
    out: dict[str, Any] = {"path": path}
    with h5py.File(path, "r") as handle:
        out["attrs"] = read_attrs(handle)
        out["methods"] = [m for m in METHODS if m in handle]
        for name in out["methods"]:
            group = handle[name]
            out[name] = {key: group[key][()] for key in group}
            out[name]["attrs"] = read_attrs(group)
        out["maps"] = {key: handle["maps"][key][()].astype(np.float32) for key in handle["maps"]}
        out["maps"]["attrs"] = read_attrs(handle["maps"])
        fid = handle["fidelity"]
        out["fidelity"] = dict(read_attrs(fid))
        for name in fid:
            out["fidelity"][name] = {key: fid[name][key][()] for key in fid[name]}
        out["images"] = {key: handle["images"][key][()] for key in handle["images"]}
    return out
