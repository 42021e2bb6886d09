"""Stage 3, the computation for one class: importances, concept maps and fidelity, image block by image block.

Images are processed ``image_block`` at a time (activations and residual of one block in memory; the perturbations
themselves go ``batch_size`` at a time through the head). A first pass gives the coefficients, per-image
importances, maps and reconstruction logits; a second pass the fidelity curves of the class-level rankings
(reusing the first pass's coefficients).

Residual: with ``residual=True`` (default) the edited activations are ``(U ⊙ M) W + (A - UW)``, so that with every
concept kept the model sees its own activations and the importances explain the model's real logit; with
``residual=False`` they are ``(U ⊙ M) W`` (CRAFT), plus the offset of centred methods (PCA) in both cases.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..runtime import work_threads
from ..schema import ActivationCache, ImportanceRecord, MethodImportance
from ..settings import ImportanceSettings
from .fidelity import c_deletion, c_insertion, c_mufidelity, reconstruction_parts, summarize_reconstruction
from .maps import contribution_maps, presence_maps
from .methods import GradientInput, ImportanceResult, aggregate, make_method
from .perturb import ConceptScorer, MaskRecorder

FLOAT16_MAX = 65000.0


@dataclass
class ClassBlocks:
    """One class's activations, cut into image blocks, with their concept coefficients and residuals."""

    cache: ActivationCache
    estimator: Any
    residual: bool
    image_block: int
    W: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.W = np.asarray(self.estimator.components_, dtype=np.float32)
        kept = self.cache.mapped  # the images whose maps are stored (all read ones unless map_images)
        size = max(1, int(self.image_block))
        self.blocks = [kept[i:i + size] for i in range(0, len(kept), size)]

    def load(self, idx: np.ndarray, U: np.ndarray | None = None):
        """Activations (b, N, D), coefficients (b, N, r), residual or centring offset, prefix of images ``idx``;
        ``U``: coefficients already computed for these images (else ``transform`` of the activations)."""
        A = self.cache.maps(idx)
        b, N, D = A.shape
        r = self.W.shape[0]
        with work_threads(float(b) * N * D * r):  # NumPy products of this size: one BLAS thread (runtime)
            return self._load(A, U, idx)

    def _load(self, A, U, idx):
        b, N, D = A.shape
        r = self.W.shape[0]
        flat = A.reshape(-1, D)
        U = np.asarray(self.estimator.transform(flat), dtype=np.float32) if U is None else U.reshape(-1, r)
        UW = U @ self.W
        if self.residual:
            res = flat - UW
        else:
            offset = np.asarray(self.estimator.inverse_transform(U), dtype=np.float32) - UW  # centred methods
            res = offset if np.abs(offset).max(initial=0.0) > 0 else None
        res = None if res is None else res.reshape(b, N, D)
        return A, U.reshape(b, N, r), res, self.cache.prefix(idx)


@dataclass
class FirstPass:
    results: dict[str, ImportanceResult]
    presence: np.ndarray
    contribution: np.ndarray
    contribution_exact: bool
    reconstruction: dict[str, float]
    coefficients: list[np.ndarray]


def _f16(maps: np.ndarray) -> np.ndarray:
    return np.clip(maps, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)


class ImageProgress:
    """A progress bar counted in images, advanced as head evaluations complete (so that it moves every few
    seconds even when one image block takes minutes). A piece of work on a block gets a share of the block's
    images and advances the bar by that share as its evaluations come back."""

    def __init__(self, bar):
        self.bar = bar
        self.done = 0.0

    def advance(self, images: float) -> None:
        if self.bar is None:
            return
        before = int(self.done + 1e-9)  # 10 x 0.2 images is 2 images, not 1.9999
        self.done += images
        after = int(self.done + 1e-9)
        if after > before:
            self.bar.update(after - before)

    def piece(self, images: float, rows: int):
        """``on_rows`` callback of a piece of work worth ``images`` images that makes ``rows`` evaluations."""
        if self.bar is None or rows <= 0:
            return None
        step = images / rows
        return lambda k: self.advance(k * step)

    def settle(self, images: int) -> None:
        """Make the bar show ``images`` images done (the end of a block)."""
        self.advance(images - self.done)


def _expected_rows(name: str, settings: ImportanceSettings, r: int, exact: bool) -> int:
    """Head evaluations per image of a method (gradient: a forward and a backward, counted as 3)."""
    if exact:
        return 0
    return {"sobol": settings.designs * (r + 2), "occlusion": r + 1, "gradient": 3}.get(name, 1)


def importance_pass(data: ClassBlocks, settings: ImportanceSettings, head, linear, class_index: int, grid, device,
                    bar=None, *, precision: str | None = None, fast: bool = True) -> FirstPass:
    """Per-image importances of every method, presence and contribution maps, reconstruction fidelity.

    ``precision``: autocast of the head (the model's precision at extraction). ``fast=False`` evaluates the head
    on dense activations only (no factored ViT head): the reference the tests compare the fast path with."""
    common = dict(exact=settings.exact, batch_size=settings.batch_size, device=device, confidence=settings.confidence,
                  progress=False, precision=precision)
    instances = {name: make_method(name, designs=settings.designs, sampler=settings.sampler,
                                   estimator=settings.estimator, seed=settings.seed, **common)
                 for name in settings.methods}
    per_image: dict[str, list] = {name: [] for name in instances}
    exact_used: dict[str, bool] = {}
    settings_used: dict[str, dict] = {}
    presence, contribution, recon_parts, coefficients = [], [], [], []
    grad_exact = False
    r = data.W.shape[0]
    exact = linear is not None and settings.exact != "off"
    pieces = {name: _expected_rows(name, settings, r, exact) for name in instances}
    pieces.setdefault("gradient", _expected_rows("gradient", settings, r, exact))
    pieces["reconstruction"] = 0 if exact else 2
    cost = sum(pieces.values())
    progress = ImageProgress(bar)
    done = 0
    for idx in data.blocks:
        A, U, res, prefix = data.load(idx)
        b = len(idx)
        coefficients.append(U)
        grad_positions = None

        def on_rows(name: str):
            return progress.piece(b * pieces[name] / cost, b * pieces[name]) if cost else None

        for name, method in instances.items():
            result = _attribute(method, U, data.W, head, class_index, linear, res, prefix, on_rows(name), fast)
            per_image[name].append(result.per_image)
            exact_used[name], settings_used[name] = result.exact, result.settings
            if name == "gradient":
                grad_positions, grad_exact = result.positions, result.exact
        if grad_positions is None:
            extra = _attribute(GradientInput(**common), U, data.W, head, class_index, linear, res, prefix,
                               on_rows("gradient"), fast)
            grad_positions, grad_exact = extra.positions, extra.exact
        presence.append(_f16(presence_maps(U, grid)))
        contribution.append(_f16(contribution_maps(grad_positions, grid)))
        recon_parts.append(reconstruction_parts(A, U, data.W, head, class_index, prefix=prefix,
                                                batch_size=settings.batch_size, device=device, precision=precision))
        done += b
        progress.settle(done)
    results = {}
    for name in instances:
        values = np.concatenate(per_image[name])
        results[name] = ImportanceResult(name, values, *aggregate(values, settings.confidence),
                                         exact=exact_used[name], settings=settings_used[name])
    recon = summarize_reconstruction({k: np.concatenate([p[k] for p in recon_parts]) for k in recon_parts[0]})
    return FirstPass(results, np.concatenate(presence), np.concatenate(contribution), bool(grad_exact), recon,
                     coefficients)


def _attribute(method, U, W, head, class_index, linear, res, prefix, on_rows, fast: bool):
    import contextlib

    from . import perturb

    switch = contextlib.nullcontext() if fast else perturb.dense_only()
    with switch:
        return method.attribute(U, W, head, class_index, linear_head=linear, residual=res, prefix=prefix,
                                on_rows=on_rows)


def fidelity_masks(scorer, first: FirstPass, settings: ImportanceSettings, offset: int):
    """Every metric of the fidelity pass on one block, for every method (run twice: to collect the masks, then
    to read the scores)."""
    n = scorer.n_images
    out = {}
    for name, result in first.results.items():
        out[name] = (c_deletion(scorer, result.class_importance, steps=settings.steps),
                     c_insertion(scorer, result.class_importance, steps=settings.steps),
                     c_mufidelity(scorer, result.per_image[offset:offset + n], n_subsets=settings.n_subsets,
                                  correlation=settings.correlation, seed=settings.seed))
    return out


def fidelity_pass(data: ClassBlocks, first: FirstPass, settings: ImportanceSettings, head, linear, class_index: int,
                  device, bar=None, *, precision: str | None = None, fast: bool = True
                  ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
    """C-Deletion, C-Insertion (of each method's class ranking) and C-muFidelity (of its per-image importances).

    The masks of every metric and method are collected first and each distinct (image, mask) pair is evaluated
    once (the full and empty masks, the random subsets of C-muFidelity, which are the same for every method, and
    the deletion / insertion steps that two rankings share); ``fast=False`` evaluates each metric on its own."""
    use_linear = linear if settings.exact != "off" else None
    curves = {name: {"deletion": [], "insertion": [], "del_auc": [], "ins_auc": [], "mu": []}
              for name in first.results}
    offset, x = 0, None
    progress = ImageProgress(bar)
    done = 0
    for idx, U in zip(data.blocks, first.coefficients):
        _, U, res, prefix = data.load(idx, U)
        scorer = ConceptScorer(U, data.W, head, class_index, linear_head=use_linear, residual=res, prefix=prefix,
                               score=settings.score, batch_size=settings.batch_size, device=device,
                               precision=precision, memo=fast, factored=fast)
        if fast and scorer.linear is None:
            recorder = MaskRecorder(scorer.n_images, scorer.n_concepts)
            fidelity_masks(recorder, first, settings, offset)
            images, masks = recorder.pairs()
            scorer.on_rows = progress.piece(len(idx), len(images))
            scorer.scores(images, masks)
            scorer.on_rows = None
        for name, (deletion, insertion, mu) in fidelity_masks(scorer, first, settings, offset).items():
            c = curves[name]
            c["deletion"].append(deletion["curves"])
            c["insertion"].append(insertion["curves"])
            c["del_auc"].append(deletion["per_image"])
            c["ins_auc"].append(insertion["per_image"])
            c["mu"].append(mu["per_image"])
            x = deletion["x"]
        offset += len(idx)
        done += len(idx)
        progress.settle(done)
    values, arrays = {}, {}
    for name, c in curves.items():
        mu = np.concatenate(c["mu"])
        values[name] = {"c_deletion": float(np.concatenate(c["del_auc"]).mean()),
                        "c_insertion": float(np.concatenate(c["ins_auc"]).mean()),
                        "c_mufidelity": float(np.nanmean(mu)) if np.isfinite(mu).any() else float("nan")}
        arrays[name] = {"x": x, "deletion_curve": np.concatenate(c["deletion"]).mean(0),
                        "insertion_curve": np.concatenate(c["insertion"]).mean(0), "mufidelity_per_image": mu}
    return values, arrays


def _full(per_kept: np.ndarray, kept: np.ndarray, n_images: int, fill=np.nan) -> np.ndarray:
    arr = np.full((n_images, *per_kept.shape[1:]), fill, dtype=per_kept.dtype)
    arr[kept] = per_kept
    return arr


def make_record(first: FirstPass, fidelity: tuple[dict, dict], settings: ImportanceSettings, *, kept: np.ndarray,
                n_images: int, class_index: int, grid, input_size: int, attrs: dict[str, Any]) -> ImportanceRecord:
    """The importance file's content from the two passes."""
    methods = {}
    for name, result in first.results.items():
        params = {k: v for k, v in result.settings.items() if k not in ("progress", "batch_size", "device")}
        methods[name] = MethodImportance(
            method=name, per_image=_full(result.per_image.astype(np.float32), kept, n_images),
            class_importance=result.class_importance, share=result.share, ci_low=result.ci_low,
            ci_high=result.ci_high, share_ci_low=result.share_ci_low, share_ci_high=result.share_ci_high,
            ranking=result.ranking(), attrs=dict(method=name, exact=result.exact, residual=settings.residual,
                                                 class_index=int(class_index), settings=params))
    values, curves = fidelity
    fidelity_attrs: dict[str, Any] = {f"reconstruction_{k}": v for k, v in first.reconstruction.items()}
    for name, scores in values.items():
        fidelity_attrs.update({f"{name}_{k}": v for k, v in scores.items()})
    r = first.presence.shape[1]
    fidelity_attrs.update(score=settings.score, residual=settings.residual,
                          steps=settings.steps if settings.steps is not None else r, n_subsets=settings.n_subsets,
                          correlation=settings.correlation,
                          ranking="class-level importance (deletion/insertion), per-image importance (mufidelity)")
    return ImportanceRecord(
        attrs=attrs, kept=np.isin(np.arange(n_images), kept), methods=methods, fidelity_attrs=fidelity_attrs,
        fidelity=curves, presence=_full(first.presence, kept, n_images, 0),
        contribution=_full(first.contribution, kept, n_images, 0),
        maps_attrs={"grid": list(grid), "input_size": int(input_size),
                    "contribution": "gradient x input of the class logit per position",
                    "exact": first.contribution_exact})
