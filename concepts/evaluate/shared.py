"""A dataset-scope dictionary against the planted concepts of the synthetic set (``concepts synth``).

Two questions, answered with the recovery machinery of :mod:`.recovery` on every class of a run factorised with
``--scope dataset``:

* **Shared concepts are one atom.** ``green_triangle`` and ``yellow_ring`` appear in every class. For each class,
  the class's view (its ``concepts_per_class`` atoms, the concepts the atlas and the importance stage see) is matched
  to the planted labels one-to-one (Hungarian on IoU, :func:`~.recovery.concept_recovery`); the view concept matched
  to a shared label is translated back to its index in the shared dictionary (``state/atoms``). The label *holds*
  when every class that contains it maps it to the **same atom** (one atom used by all of them: not missing from a
  class's view, not split into one atom per group of classes) and that atom's IoU with the label reaches
  ``min_share`` of the ceiling in every class (the IoU of the true masks themselves at the feature grid, the
  ``oracle (masks)`` row of the method comparison: a thin ring never fills an 8x8 cell, so 1 is out of reach).
* **Key concepts are recovered at least as well as per class.** Each class's key IoU from its view of the shared
  dictionary against the key IoU of a per-class method (NMF by default) fitted on that class's rows alone with as
  many concepts as the view has.

:func:`shared_recovery` returns both as plain dicts (one row per class, one per shared label);
``benchmarks/shared_synthetic.py`` prints them, ``tests/evaluate/test_evaluate_shared.py`` checks them on
activations planted from the masks.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..errors import ConceptsError

#: IoU of a shared atom with its label, as a share of the masks' own IoU at the grid (see the module docstring)
MIN_SHARE = 0.5


def _importance(U: np.ndarray, W: np.ndarray, head, class_index: int) -> np.ndarray | None:
    """Exact gradient x input of the class logit for a pooled linear head (``None`` without one)."""
    if head is None:
        return None
    weight = np.asarray(head[0], np.float64)[class_index]
    return U.reshape(-1, U.shape[-1]).mean(axis=0) * (np.asarray(W, np.float64) @ weight)


def _recovery(U: np.ndarray, W: np.ndarray, data, truth: dict, threshold: float, head) -> dict[str, Any]:
    from .recovery import concept_recovery

    n = data.maps.shape[0]
    gh, gw = data.grid
    maps = U.reshape(n, gh, gw, U.shape[-1])
    return concept_recovery(maps, W, truth["labels"], truth["n_labels"],
                            importance=_importance(U, W, head, data.class_index), key_label=truth["key_label"],
                            background=truth["background"], threshold=threshold)


def _oracle(data, truth: dict) -> dict[str, Any]:
    from .recovery import concept_recovery, coverage

    cover = coverage(truth["labels"], data.grid, truth["n_labels"])
    return concept_recovery(cover, None, truth["labels"], truth["n_labels"], key_label=truth["key_label"],
                            background=truth["background"], threshold=0.0)


def class_rows(run: str | os.PathLike, *, classes: Sequence[str] | None = None, baseline: str = "nmf",
               baseline_concepts: int | None = None, seed: int = 0, threshold: float = 0.1, head="auto",
               max_rows: int | None = 20000) -> list[dict[str, Any]]:
    """One dict per class: its view's recovery (per label: matched atom and IoU), the oracle's, the baseline's.

    ``run`` must have been factorised with ``--scope dataset`` and its images must come from ``concepts synth``.
    ``head``: ``(weight, bias)`` of a pooled linear head for the top-concept check, ``None`` for none, ``"auto"``
    for the run's model's (``split.linear_head()``).
    """
    from ..factorize import load_concepts
    from ..models import ModelCache
    from ..schema import RunFolder
    from .compare import ClassData, make_method, synthetic_truth

    folder = RunFolder(run)
    wanted = list(classes) if classes else folder.classes("factorize")
    if not wanted:
        raise ConceptsError(f"no concepts in {folder.path} (run `concepts factorize --scope dataset` first)")
    models = ModelCache(None) if head == "auto" else None
    rows = []
    for class_id in wanted:
        view = load_concepts(run, class_id)
        if getattr(view, "attrs", {}).get("scope") != "dataset" or not hasattr(view, "atoms"):
            raise ConceptsError(f"the concepts of class {class_id!r} in {folder.path} are not a view of a shared "
                                "dictionary; run `concepts factorize --scope dataset`")
        data = ClassData.load(run, class_id, max_rows=max_rows, seed=seed)
        truth = synthetic_truth(data)
        if truth is None or data.layout != "spatial":
            raise ConceptsError(f"class {class_id!r}: shared-concept recovery needs a patches-mode run of images "
                                "made by `concepts synth`")
        class_head = models.for_artefact(data.attrs).linear_head() if models is not None else head
        flat = data.maps.reshape(-1, data.maps.shape[-1])
        U = np.asarray(view.transform(flat), np.float32)
        W = np.asarray(view.components_, np.float32)
        rec = _recovery(U, W, data, truth, threshold, class_head)
        atoms = np.asarray(view.atoms)
        # a label matched at IoU 0 (the Hungarian match of a label no position of the view covers) is missing
        label_atom = {int(label): int(atoms[j]) for j, label in rec["pairs"]
                      if rec["per_label_iou"].get(int(label), 1.0) > 0}

        r = int(baseline_concepts or len(atoms))
        est = make_method(baseline, r, seed).fit(data.rows)
        Ub = np.asarray(est.transform(flat), np.float32)
        base = _recovery(Ub, np.asarray(est.components_, np.float32), data, truth, threshold, class_head)
        oracle = _oracle(data, truth)
        rows.append({
            "class_id": class_id, "class_name": data.class_name, "n_images": int(data.maps.shape[0]),
            "concepts": truth["concepts"], "key_label": truth["key_label"], "atoms": atoms.tolist(),
            "dictionary_size": int(view.attrs.get("dictionary_size", len(atoms))), "method": view.attrs.get("method"),
            "per_label_iou": rec["per_label_iou"], "label_atom": label_atom, "key_iou": rec["key_iou"],
            "top_is_key": rec.get("top_is_key"), "recovery_iou": rec["recovery_iou"],
            "oracle_per_label_iou": oracle["per_label_iou"], "oracle_key_iou": oracle["key_iou"],
            "baseline": baseline, "baseline_concepts": r, "baseline_key_iou": base["key_iou"],
            "baseline_top_is_key": base.get("top_is_key"), "baseline_recovery_iou": base["recovery_iou"],
            "baseline_per_label_iou": base["per_label_iou"],
        })
    return rows


def shared_labels(rows: Sequence[dict[str, Any]], labels: Sequence[str] | None = None,
                  min_share: float = MIN_SHARE) -> list[dict[str, Any]]:
    """One dict per shared planted label: the atom each class maps it to, its IoU there against the oracle's, and
    ``holds`` (one atom for every class that contains the label, IoU >= ``min_share`` x oracle in each)."""
    from . import synthetic as syn

    names = rows[0]["concepts"] if rows else list(syn.CONCEPTS)
    out = []
    for name in (labels or syn.SHARED):
        label = names.index(name)
        present = [r for r in rows if label in r["oracle_per_label_iou"]]
        atoms = {r["class_id"]: r["label_atom"].get(label) for r in present}
        iou = {r["class_id"]: float(r["per_label_iou"].get(label, 0.0)) for r in present}
        ceiling = {r["class_id"]: float(r["oracle_per_label_iou"][label]) for r in present}
        share = {c: iou[c] / ceiling[c] if ceiling[c] > 0 else float("nan") for c in iou}
        base = [float(r["baseline_per_label_iou"].get(label, 0.0)) for r in present if "baseline_per_label_iou" in r]
        distinct = sorted({a for a in atoms.values() if a is not None})
        missing = sorted(c for c, a in atoms.items() if a is None)
        out.append({
            "label": name, "classes": len(present), "atoms": distinct, "missing": missing,
            "atom": distinct[0] if len(distinct) == 1 else None,
            "min_iou": min(iou.values()) if iou else float("nan"),
            "mean_iou": float(np.mean(list(iou.values()))) if iou else float("nan"),
            "mean_oracle_iou": float(np.mean(list(ceiling.values()))) if ceiling else float("nan"),
            "min_share": min(share.values()) if share else float("nan"),
            "baseline_mean_iou": float(np.mean(base)) if base else float("nan"),
            "holds": bool(present) and len(distinct) == 1 and not missing and min(share.values()) >= min_share,
        })
    return out


def key_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean key IoU of the class views against the per-class baseline's, and in how many classes it is >=."""
    ours = np.array([r["key_iou"] for r in rows], float)
    base = np.array([r["baseline_key_iou"] for r in rows], float)
    return {"classes": len(rows), "key_iou": float(ours.mean()), "baseline_key_iou": float(base.mean()),
            "oracle_key_iou": float(np.mean([r["oracle_key_iou"] for r in rows])),
            "at_least_baseline": int(np.sum(ours >= base - 1e-9)),
            "top_is_key": _share([r["top_is_key"] for r in rows]),
            "baseline_top_is_key": _share([r["baseline_top_is_key"] for r in rows])}


def _share(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def shared_recovery(run: str | os.PathLike, *, min_share: float = MIN_SHARE, **options) -> dict[str, Any]:
    """``{"classes": class_rows(...), "shared": shared_labels(...), "key": key_summary(...)}`` of a run."""
    rows = class_rows(run, **options)
    return {"classes": rows, "shared": shared_labels(rows, min_share=min_share), "key": key_summary(rows)}
