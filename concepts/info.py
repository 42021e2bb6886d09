"""What a run folder holds: classes, rows, shapes, stages done, provenance, diagnostics and rankings."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import ConceptsError
from .evidence import EXPLANATIONS, class_diagnostics
from .evidence.numbers import num, pct as _pct
from .schema import STAGE_FOLDERS, STAGES, RunFolder
from .schema.classdata import load_class


def _tree_summary(attrs: dict[str, Any], tree) -> dict[str, Any]:
    """The size of a class's sub-concept tree against its bound r x (s + ... + s^depth)."""
    a = tree.attrs
    return {"nodes": int(tree.n_nodes), "bound": int(a.get("bound", 0)), "depth": a.get("depth"),
            "sub_concepts": a.get("sub_concepts"), "percentile": a.get("percentile"), "layer": a.get("layer"),
            "not_split": a.get("not_split"), "seconds": a.get("seconds"),
            "levels": {int(d): int((tree.depth == d).sum()) for d in np.unique(tree.depth)}}


def run_summary(run: str | os.PathLike, layer: str | None = None) -> dict[str, Any]:
    """A JSON-able summary of the run folder (of one of its cached layers: ``layer``; default the main one)."""
    folder = RunFolder(run, layer=layer)
    run = folder.path
    scans = {stage: folder.scan(stage) for stage in STAGE_FOLDERS}
    stages = {stage: scan.found for stage, scan in scans.items()}
    statuses = folder.status()
    if not statuses:
        raise ConceptsError(f"{run} holds no activations, concepts or importance files")
    summary: dict[str, Any] = {"run": str(run), "classes": {}, "provenance": {}}
    for class_id, status in statuses.items():
        entry: dict[str, Any] = {"status": dict(status.stages), "problems": dict(status.reasons)}
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
            record = folder.concepts(class_id, coefficients=False)
            attrs = record.attrs
            entry["concepts"] = {k: attrs.get(k) for k in (
                "method", "n_concepts", "seed", "rel_error", "sparsity_l0", "hoyer", "dead", "n_iter",
                "converged", "seconds")}
            if record.tree is not None:
                entry["concepts"]["tree"] = _tree_summary(attrs, record.tree)
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
        if all(state == "done" for state in status.stages.values()):
            data = load_class(run, class_id, with_maps=False, with_coefficients=False)
            entry["diagnostics"] = class_diagnostics(data).row()
        summary["classes"][class_id] = entry
    if folder.dictionary_file.exists():
        attrs = folder.dictionary().attrs
        summary["dictionary"] = {k: attrs.get(k) for k in ("method", "n_concepts", "classes", "fit", "n_rows",
                                                           "n_fit_rows", "fit_rel_error", "n_iter", "converged")}
    summary["stages"] = {stage: sum(s.stages[stage] == "done" for s in statuses.values()) for stage in STAGES}
    summary["not_done"] = {stage: {c: s.stages[stage] for c, s in statuses.items() if s.stages[stage] != "done"}
                           for stage in STAGES}
    summary["layers"] = {name: str(path) for name, path in folder.layers().items()}
    summary["layer"] = next((name for name, path in folder.layers().items() if path == folder.path), layer)
    summary["stages"]["fviz"] = len(stages.get("fviz", []))  # optional: not part of a class's status
    summary["stages"]["atlas"] = (run / "atlas" / "index.html").is_file()
    summary["stages"]["export"] = (run / "exports" / "manifest.json").is_file()
    return summary


def _tree_line(tree: dict[str, Any]) -> str:
    return (f"    sub-concepts: {tree['nodes']} of at most {tree['bound']} (depth {tree['depth']}, "
            f"{tree['sub_concepts']} per concept, rows >= percentile {tree['percentile']}, layer {tree['layer']}; "
            f"{tree['not_split']} not split) {round(float(tree['seconds'] or 0), 2)} s")


def _layers_line(summary: dict[str, Any]) -> str:
    layers = summary["layers"]
    return (f"layers ({len(layers)}): " + ", ".join(f"{name}{' (shown)' if name == summary.get('layer') else ''}"
                                                   for name in layers) + "; choose one with --layer")


def format_summary(summary: dict[str, Any]) -> str:
    """The text of ``concepts info``: the run (provenance, stages, dictionary), then each class."""
    lines = _run_lines(summary)
    lines.append(f"classes ({len(summary['classes'])}):")
    for class_id, entry in summary["classes"].items():
        lines += _class_lines(class_id, entry)
    if any(entry.get("diagnostics") for entry in summary["classes"].values()):
        lines += ["what the figures mean:"] + [f"  {name}: {text}" for name, text in EXPLANATIONS.items()]
    return "\n".join(lines)


def _run_lines(summary: dict[str, Any]) -> list[str]:
    lines = [f"run: {summary['run']}"]
    prov = summary["provenance"]
    if prov:
        lines.append(f"model: {prov.get('model')}  weights: {prov.get('weights')} (sha256 {str(prov.get('weights_sha256'))[:12]})")
        lines.append(f"layer: {prov.get('layer')}  layout: {prov.get('layout')} grid {prov.get('grid')}  "
                     f"mode: {prov.get('mode')}" + (f" patch {prov.get('patch_size')} stride {prov.get('stride')}"
                                                   if prov.get("mode") == "crops" else ""))
        lines.append(f"preprocessing: {prov.get('preprocessing')}  storage: {prov.get('dtype')}  "
                     f"precision: {prov.get('precision')}  concepts {prov.get('package_version')}  {prov.get('created')}")
    if len(summary.get("layers") or {}) > 1:
        lines.append(_layers_line(summary))
    stages = summary["stages"]
    n = len(summary["classes"])
    lines.append(f"stages done: extract {stages['extract']}/{n}, factorize {stages['factorize']}/{n}, "
                 f"importance {stages['importance']}/{n}, fviz {stages.get('fviz', 0)}/{n}, "
                 f"atlas {'yes' if stages['atlas'] else 'no'}, "
                 f"export {'yes' if stages['export'] else 'no'}")
    for stage, bad in summary.get("not_done", {}).items():
        counts: dict[str, int] = {}
        for state in bad.values():
            counts[state] = counts.get(state, 0) + 1
        if bad:
            lines.append(f"  {stage}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    shared = summary.get("dictionary")
    if shared:
        lines.append(f"dictionary: {shared['method']}, {shared['n_concepts']} atoms shared by "
                     f"{len(shared['classes'] or [])} classes (fit on {shared['fit']} of {shared['n_rows']} rows, "
                     f"rel.error {float(shared['fit_rel_error']):.4g}, {shared['n_iter']} iterations)")
    return lines


#: what a ranking's shares are, by method (``info`` labels every share)
SHARE_MEANING = {"sobol": "share of the summed Sobol indices",
                 "prevalence": "share of the images whose strongest concept it is; no class score"}


def _class_lines(class_id: str, entry: dict[str, Any]) -> list[str]:
    head = f"  {class_id}"
    problems = [f"{stage} {state} ({entry['problems'].get(stage, '')})".replace(" ()", "")
                for stage, state in entry.get("status", {}).items() if state != "done"]
    if "class_name" in entry:
        head += (f"  {entry['class_name']!r} -> logit {entry['class_index']} ({entry['class_index_source']})  "
                 f"images {entry['images']} (skipped {entry['skipped']})  rows {entry['rows']} x {entry['channels']}")
    lines = [head]
    if problems:
        lines.append("    not usable: " + "; ".join(problems))
    c = entry.get("concepts")
    if c:
        err = c.get("rel_error")
        lines.append(f"    concepts: {c.get('method')} r={c.get('n_concepts')} seed={c.get('seed')} "
                     f"rel.error={err if err is None else round(float(err), 4)} dead={c.get('dead')} "
                     f"iters={c.get('n_iter')} converged={c.get('converged')} "
                     f"{round(float(c.get('seconds') or 0), 2)} s")
    if (c or {}).get("tree"):
        lines.append(_tree_line(c["tree"]))
    for method, ranking in (entry.get("importance") or {}).items():
        top = ", ".join(f"#{k} {share:.1%}" for k, share in ranking[:5])
        what = SHARE_MEANING.get(method, "signed share of the summed absolute contributions")
        lines.append(f"    importance[{method}] ({what}): {top}")
    fid = entry.get("fidelity") or {}
    if fid:
        lines.append("    fidelity: " + _fidelity_text(fid, entry.get("importance") or {}))
    fv = entry.get("fviz")
    if fv:
        lines.append(f"    fviz: {fv.get('n_targets')} images ({fv.get('steps')} steps x {fv.get('crops')} crops, "
                     f"{fv.get('image_size')} px), {fv.get('excited')}/{fv.get('n_concepts')} concepts excited "
                     f"(own coefficient above the class's 99th percentile, and the largest), "
                     f"{round(float(fv.get('seconds') or 0), 1)} s")
    if entry.get("diagnostics"):
        lines += _diagnostic_lines(entry["diagnostics"])
    return lines


def _fidelity_text(fid: dict[str, Any], methods) -> str:
    parts = []
    if fid.get("reconstruction_logit_ratio") is not None:
        parts.append(f"logit h(UW)/h(A) {float(fid['reconstruction_logit_ratio']):.2f}")
    for method in methods:
        if fid.get(f"{method}_c_deletion") is not None:
            parts.append(f"{method} C-Del {float(fid[f'{method}_c_deletion']):.3g} "
                         f"C-Ins {float(fid[f'{method}_c_insertion']):.3g} "
                         f"C-muF {float(fid[f'{method}_c_mufidelity']):.2f}")
    return "; ".join(parts) or str(fid.get("note", "none"))


def _diagnostic_lines(d: dict[str, Any]) -> list[str]:
    """The completeness and fit of one class, as the atlas shows them."""
    lines = []
    if d["decomposition"] == "exact":
        lines.append(f"    explained: concepts {_pct(d['explained_share'])} of the logit {num(d['logit'])} "
                     f"(concepts {num(d['logit_concepts'])} + residual {num(d['logit_residual'])} "
                     f"[{_pct(d['residual_share'])}] + bias {num(d['logit_bias'])} [{_pct(d['bias_share'])}])")
    elif d["decomposition"] == "reconstruction":
        lines.append(f"    explained: h(UW) reproduces {_pct(d['explained_share'])} of the logit {num(d['logit'])} "
                     f"(residual {num(d['logit_residual'])}; no exact split: the head is not linear)")
    converged = {1: "converged", 0: "did NOT converge", -1: "convergence not recorded"}[int(d["converged"])]
    limit = f" of {d['max_iter']}" if d["max_iter"] >= 0 else ""
    lines.append(f"    fit: rel.error {num(d['rel_error'])} (rows), {num(d['rel_error_positions'])} (positions); "
                 f"{converged} after {d['n_iter']}{limit} iterations; logit correlation "
                 f"{num(d['logit_correlation'], 2)}")
    return lines
