"""The method comparison: every extraction method on every class of a run, one row per (class, method).

For each class of ``RUN/activations`` and each method:

* the method is fitted on the class's cached rows (crops or feature-map positions) with seed
  ``seeds[0]``; **relative l2 error** ``||A - inverse_transform(U)|| / ||A||`` and **sparsity**
  (fraction of zero coefficients, ``l0``, and Hoyer's measure) on those rows;
* the coefficients of every feature-map position of every image give the concept importance
  (``importance``: total Sobol indices by default, as CRAFT; closed form for a pooled linear head) and the fidelity
  metrics of :mod:`concepts.importance.fidelity` — **C-Deletion** (lower is better), **C-Insertion**
  (higher is better), **C-μFidelity** — on the class logit of ``h((U ⊙ M) W + R)`` (the residual
  ``R = A - UW`` added back unless ``residual=False``);
* **stability** (:mod:`concepts.evaluate.stability`): refits with the other seeds and on image
  subsamples, Hungarian-matched mean |cosine|;
* on a synthetic run (images written by ``concepts synth``), **concept recovery**
  (:mod:`concepts.evaluate.recovery`) against the per-pixel masks, and whether the most important
  concept is the class's key concept.

``random`` (:class:`concepts.evaluate.baselines.RandomAtoms`) is a floor; on a synthetic run the row
``oracle (masks)`` gives the recovery of the true masks themselves, the ceiling at the grid's resolution.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import ConceptsError
from ..models import ModelCache

DEFAULT_METHODS = ("nmf", "semi_nmf", "pca", "ica", "kmeans", "dictionary", "random")
ORACLE = "oracle (masks)"

COLUMNS = [
    "dataset", "class_id", "class_name", "method", "n_concepts", "n_images", "n_rows",
    "rel_error", "sparsity_l0", "hoyer", "dead",
    "stability", "stability_seed", "stability_subsample",
    "c_deletion", "c_insertion", "c_mufidelity",
    "recovery_iou", "key_iou", "purity", "top_is_key",
    "logit_original", "fit_seconds",
]


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Settings of an evaluation (stored next to the results)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    n_concepts: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)
    n_subsamples: int = 3
    fraction: float = 0.8
    importance: str = "sobol"
    residual: bool = True
    steps: int | None = None
    n_subsets: int = 64
    correlation: str = "spearman"
    max_rows: int | None = 20000
    threshold: float = 0.1
    method_params: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_method(name: str, n_concepts: int, seed: int, device=None, **params):
    """An unfitted estimator: ``random`` (the baseline) or a method of ``concepts.factorize``; its parameters
    are checked here (one-line ConceptsError), before any fitting."""
    if name == "random":
        from ..factorize.validation import validate_params
        from .baselines import RandomAtoms

        estimator = RandomAtoms(n_concepts, random_state=seed, device=device, **params)
        validate_params(estimator)
        return estimator
    from ..factorize import make_estimator

    return make_estimator(name, n_concepts, random_state=seed, device=device, **params)


@dataclasses.dataclass
class ClassData:
    """What the evaluation needs from one class's activations file."""

    class_id: str
    class_name: str
    class_index: int
    attrs: dict
    rows: np.ndarray  # (R, D) fitting rows
    row_image: np.ndarray  # (R,)
    maps: np.ndarray  # (n, N, D) positions of kept images
    prefix: np.ndarray | None
    grid: tuple[int, int]
    layout: str
    paths: list[str]  # of kept images

    @classmethod
    def load(cls, run: str | os.PathLike, class_id: str, max_rows: int | None = None, seed: int = 0) -> "ClassData":
        from ..extract.cache import open_activations

        with open_activations(run, class_id) as cache:
            kept = cache.mapped  # the images with stored maps
            if len(kept) == 0:
                raise ConceptsError(f"class {class_id!r} has no readable images")
            if max_rows is not None and cache.n_rows > max_rows:
                rng = np.random.default_rng(seed)
                idx = np.sort(rng.choice(cache.n_rows, size=max_rows, replace=False))
                rows = cache.rows()[idx]
                row_image = cache.row_image[idx]
            else:
                rows, row_image = cache.rows(), cache.row_image
            return cls(
                class_id=cache.class_id, class_name=cache.class_name, class_index=cache.class_index,
                attrs=dict(cache.attrs), rows=np.asarray(rows, np.float32), row_image=np.asarray(row_image),
                maps=cache.maps(kept), prefix=cache.prefix(kept), grid=tuple(cache.grid), layout=cache.layout,
                paths=[cache.images["path"][i] for i in kept],
            )


def synthetic_truth(data: ClassData) -> dict | None:
    """Label maps and key concept of a class whose images come from ``concepts synth`` (else None)."""
    from . import synthetic

    root = synthetic.find_dataset_root(data.paths[0])
    if root is None:
        return None
    definition = synthetic.load_definition(root)
    folder = Path(data.paths[0]).parent.name
    entry = next((c for c in definition["classes"] if c["folder"] == folder), None)
    if entry is None:
        raise ConceptsError(f"class folder {folder!r} is not in {root / synthetic.DEFINITION_FILE}")
    labels = np.stack([synthetic.load_mask(p) for p in data.paths])
    return {"labels": labels, "key_label": int(entry["key_label"]), "n_labels": len(definition["concepts"]),
            "background": int(definition.get("background_label", 0)), "concepts": definition["concepts"]}


def evaluate_method(data: ClassData, method: str, config: EvalConfig, split, truth: dict | None = None,
                    device=None) -> dict[str, Any]:
    """All metrics of one method on one class (one row of the comparison table).

    Longer than most functions here on purpose: each metric is a few lines, and keeping them together lets the
    row's columns be read in one place, in the order of the report's table.
    """
    from ..factorize.metrics import dead_concepts, hoyer, sparsity_l0
    from ..importance.fidelity import c_deletion, c_insertion, c_mufidelity
    from ..importance.methods import make_method as make_importance
    from ..importance.perturb import ConceptScorer
    from .recovery import concept_recovery
    from .stability import stability

    params = dict(config.method_params.get(method, {}))
    r = int(config.n_concepts)
    t0 = time.perf_counter()
    est = make_method(method, r, config.seeds[0], device=device, **params).fit(data.rows)
    fit_seconds = time.perf_counter() - t0
    W = np.asarray(est.components_, dtype=np.float32)
    U_rows = np.asarray(est.transform(data.rows), dtype=np.float32)
    recon_rows = np.asarray(est.inverse_transform(U_rows), dtype=np.float32)
    norm = float(np.linalg.norm(data.rows))
    row: dict[str, Any] = {
        "method": method, "n_concepts": r, "n_rows": int(len(data.rows)),
        "rel_error": float(np.linalg.norm(data.rows - recon_rows) / norm) if norm > 0 else 0.0,
        "sparsity_l0": sparsity_l0(U_rows), "hoyer": hoyer(U_rows), "dead": int(len(dead_concepts(U_rows, W))),
        "fit_seconds": round(fit_seconds, 3),
    }

    # coefficients at every position of every kept image -> importance and fidelity
    n, N, D = data.maps.shape
    flat = data.maps.reshape(-1, D)
    U = np.asarray(est.transform(flat), dtype=np.float32)
    recon = np.asarray(est.inverse_transform(U), dtype=np.float32)
    offset = recon - U @ W  # non-zero only for centred methods (PCA, ICA)
    if config.residual:
        res = flat - U @ W
    else:
        res = offset if np.abs(offset).max(initial=0.0) > 0 else None
    U3 = U.reshape(n, N, r)
    res = None if res is None else res.reshape(n, N, D)
    head = split.h_positions
    linear = split.linear_head()
    imp = make_importance(config.importance, device=device, progress=False).attribute(
        U3, W, head, data.class_index, linear_head=linear, residual=res, prefix=data.prefix)
    scorer = ConceptScorer(U3, W, head, data.class_index, linear_head=linear, residual=res, prefix=data.prefix,
                           device=device)
    row["logit_original"] = float(np.mean(scorer.full_scores()))
    row["c_deletion"] = c_deletion(scorer, imp.class_importance, steps=config.steps)["auc"]
    row["c_insertion"] = c_insertion(scorer, imp.class_importance, steps=config.steps)["auc"]
    row["c_mufidelity"] = c_mufidelity(scorer, imp.per_image, n_subsets=config.n_subsets,
                                       correlation=config.correlation, seed=config.seeds[0])["value"]

    # concept recovery against planted masks
    if truth is not None and data.layout == "spatial":
        gh, gw = data.grid
        rec = concept_recovery(U3.reshape(n, gh, gw, r), W, truth["labels"], truth["n_labels"],
                               importance=imp.class_importance, key_label=truth["key_label"],
                               background=truth["background"], threshold=config.threshold)
        row.update(recovery_iou=rec["recovery_iou"], key_iou=rec["key_iou"], purity=rec["purity"],
                   top_is_key=float(rec["top_is_key"]),
                   top_concept_label=truth["concepts"][rec["top_label"]] if rec["top_label"] >= 0 else "none")

    # stability across seeds and image subsamples
    def fit_bank(X: np.ndarray, seed: int) -> np.ndarray:
        return make_method(method, r, seed, device=device, **params).fit(X).components_

    stab = stability(fit_bank, data.rows, row_image=data.row_image, seeds=config.seeds,
                     n_subsamples=config.n_subsamples, fraction=config.fraction, seed=config.seeds[0],
                     banks={"seed": [W]})
    row.update(stability=stab["stability"], stability_seed=stab["stability_seed"],
               stability_subsample=stab["stability_subsample"])
    return row


def oracle_row(data: ClassData, truth: dict, config: EvalConfig) -> dict[str, Any]:
    """Recovery of the truth itself: concept maps = the masks' coverage of each grid cell.

    The ceiling of the recovery scores at this grid resolution (cells straddle object borders, thin
    shapes never fill a cell), reported as the method ``oracle (masks)``.
    """
    from .recovery import concept_recovery, coverage

    n = data.maps.shape[0]
    cover = coverage(truth["labels"], data.grid, truth["n_labels"])
    key_importance = np.eye(truth["n_labels"])[truth["key_label"]]
    rec = concept_recovery(cover, None, truth["labels"], truth["n_labels"], importance=key_importance,
                           key_label=truth["key_label"], background=truth["background"], threshold=0.0)
    return {"method": ORACLE, "n_concepts": truth["n_labels"], "n_rows": n * int(np.prod(data.grid)),
            "recovery_iou": rec["recovery_iou"], "key_iou": rec["key_iou"], "purity": rec["purity"]}


def evaluate_run(run: str | os.PathLike, config: EvalConfig = EvalConfig(), *, classes: Iterable[str] | None = None,
                 dataset: str | None = None, device=None, progress: bool = True):
    """The comparison table of one run: a pandas DataFrame with one row per (class, method)."""
    import pandas as pd
    from tqdm.auto import tqdm

    from ..extract.cache import list_classes

    run = Path(run)
    available = list_classes(run)
    if not available:
        raise ConceptsError(f"no activations in {run} (run `concepts extract` first)")
    wanted = list(classes) if classes else available
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise ConceptsError(f"classes not in {run}: {', '.join(missing)}")
    for m in config.methods:
        if m != "random":
            from ..factorize import canonical_method

            canonical_method(m)
    dataset = dataset or run.name
    models = ModelCache(device)
    records = []
    bar = tqdm(total=len(wanted) * len(config.methods), desc=f"evaluate {dataset}", disable=not progress)
    for class_id in wanted:
        data = ClassData.load(run, class_id, max_rows=config.max_rows, seed=config.seeds[0])
        truth = synthetic_truth(data)
        split = models.for_artefact(data.attrs)
        if truth is not None and data.layout == "spatial":
            records.append(dict(oracle_row(data, truth, config), dataset=dataset, class_id=data.class_id,
                                class_name=data.class_name, n_images=int(data.maps.shape[0])))
        for method in config.methods:
            bar.set_postfix(cls=class_id, method=method)
            row = evaluate_method(data, method, config, split, truth, device=device)
            row.update(dataset=dataset, class_id=data.class_id, class_name=data.class_name,
                       n_images=int(data.maps.shape[0]))
            records.append(row)
            bar.update(1)
    bar.close()
    frame = pd.DataFrame.from_records(records)
    cols = [c for c in COLUMNS if c in frame.columns] + [c for c in frame.columns if c not in COLUMNS]
    return frame[cols]
