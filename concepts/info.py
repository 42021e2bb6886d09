"""What a run folder holds: classes, rows, shapes, stages done, provenance, diagnostics and rankings."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConceptsError
from .schema import STAGE_FOLDERS, RunFolder


def run_summary(run: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able summary of the run folder."""
    folder = RunFolder(run)
    run = folder.path
    stages = {stage: folder.scan(stage).check().found for stage in STAGE_FOLDERS}
    if not any(stages.values()):
        raise ConceptsError(f"{run} holds no activations, concepts or importance files")
    summary: dict[str, Any] = {"run": str(run), "classes": {}, "provenance": {}}
    for class_id in sorted(set().union(*[set(v) for v in stages.values()])):
        entry: dict[str, Any] = {}
        if class_id in stages["extract"]:
            with folder.activations(class_id) as cache:
                attrs = cache.attrs
                entry.update(class_name=attrs.get("class_name"), class_index=attrs.get("class_index"),
                             class_index_source=attrs.get("class_index_source"), images=attrs.get("n_images"),
                             skipped=attrs.get("n_skipped"), rows=int(cache.n_rows), channels=int(cache.n_channels),
                             maps_shape=[cache.n_images, cache.n_positions, cache.n_channels])
                if not summary["provenance"]:
                    summary["provenance"] = {k: attrs.get(k) for k in (
                        "model", "weights", "weights_sha256", "layer", "layout", "grid", "n_prefix", "mode",
                        "patch_size", "stride", "dtype", "precision", "preprocessing", "package_version", "created")}
        if class_id in stages["factorize"]:
            attrs = folder.concepts(class_id, coefficients=False).attrs
            entry["concepts"] = {k: attrs.get(k) for k in (
                "method", "n_concepts", "seed", "rel_error", "sparsity_l0", "hoyer", "dead", "n_iter",
                "converged", "seconds")}
        if class_id in stages["importance"]:
            record = folder.importance(class_id, maps=False)
            entry["importance"] = {
                method: [[int(k), round(float(imp.share[k]), 4)] for k in np.argsort(-np.asarray(imp.share, float))]
                for method, imp in record.methods.items()}
            entry["fidelity"] = record.fidelity_attrs
        if class_id in stages["fviz"]:
            attrs = folder.fviz(class_id, images=False).attrs
            entry["fviz"] = {k: attrs.get(k) for k in ("n_targets", "excited", "n_concepts", "steps", "crops",
                                                       "image_size", "seed", "spectrum", "seconds")}
        summary["classes"][class_id] = entry
    summary["stages"] = {stage: len(files) for stage, files in stages.items()}
    summary["stages"]["atlas"] = (run / "atlas" / "index.html").is_file()
    summary["stages"]["export"] = (run / "exports" / "manifest.json").is_file()
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"run: {summary['run']}"]
    prov = summary["provenance"]
    if prov:
        lines.append(f"model: {prov.get('model')}  weights: {prov.get('weights')} (sha256 {str(prov.get('weights_sha256'))[:12]})")
        lines.append(f"layer: {prov.get('layer')}  layout: {prov.get('layout')} grid {prov.get('grid')}  "
                     f"mode: {prov.get('mode')}" + (f" patch {prov.get('patch_size')} stride {prov.get('stride')}"
                                                   if prov.get("mode") == "crops" else ""))
        lines.append(f"preprocessing: {prov.get('preprocessing')}  storage: {prov.get('dtype')}  "
                     f"precision: {prov.get('precision')}  concepts {prov.get('package_version')}  {prov.get('created')}")
    stages = summary["stages"]
    n = len(summary["classes"])
    lines.append(f"stages: extract {stages['extract']}/{n}, factorize {stages['factorize']}/{n}, "
                 f"importance {stages['importance']}/{n}, fviz {stages.get('fviz', 0)}/{n}, atlas {'yes' if stages['atlas'] else 'no'}, "
                 f"export {'yes' if stages['export'] else 'no'}")
    lines.append(f"classes ({n}):")
    for class_id, entry in summary["classes"].items():
        head = f"  {class_id}"
        if "class_name" in entry:
            head += (f"  {entry['class_name']!r} -> logit {entry['class_index']} ({entry['class_index_source']})  "
                     f"images {entry['images']} (skipped {entry['skipped']})  rows {entry['rows']} x {entry['channels']}")
        lines.append(head)
        c = entry.get("concepts")
        if c:
            err = c.get("rel_error")
            lines.append(f"    concepts: {c.get('method')} r={c.get('n_concepts')} seed={c.get('seed')} "
                         f"rel.error={err if err is None else round(float(err), 4)} dead={c.get('dead')} "
                         f"iters={c.get('n_iter')} converged={c.get('converged')} "
                         f"{round(float(c.get('seconds') or 0), 2)} s")
        for method, ranking in (entry.get("importance") or {}).items():
            top = ", ".join(f"#{k} {share:.1%}" for k, share in ranking[:5])
            lines.append(f"    importance[{method}]: {top}")
        fid = entry.get("fidelity") or {}
        if fid:
            parts = []
            if fid.get("reconstruction_logit_ratio") is not None:
                parts.append(f"logit h(UW)/h(A) {float(fid['reconstruction_logit_ratio']):.2f}")
            for method in entry.get("importance") or {}:
                if fid.get(f"{method}_c_deletion") is not None:
                    parts.append(f"{method} C-Del {float(fid[f'{method}_c_deletion']):.3g} "
                                 f"C-Ins {float(fid[f'{method}_c_insertion']):.3g} "
                                 f"C-muF {float(fid[f'{method}_c_mufidelity']):.2f}")
            lines.append("    fidelity: " + "; ".join(parts))
        fv = entry.get("fviz")
        if fv:
            lines.append(f"    fviz: {fv.get('n_targets')} images ({fv.get('steps')} steps x {fv.get('crops')} crops, "
                         f"{fv.get('image_size')} px), {fv.get('excited')}/{fv.get('n_concepts')} concepts excited "
                         f"(own coefficient above the class's 99th percentile, and the largest), "
                         f"{round(float(fv.get('seconds') or 0), 1)} s")
    return "\n".join(lines)
