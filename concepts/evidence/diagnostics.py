"""How much of a class's logit its concepts explain, how well the concept bank fits, and the fidelity scores.

With a global-average-pool + linear head (``importance`` records ``linear_head``) and gradient x input in closed
form, the mean class logit of the model splits exactly::

    logit = h(A) = bias + sum_k contribution_k + residual

``contribution_k`` is concept k's mean term of the logit (gradient x input, in logit units), ``residual`` is
``h(A) - h(UW)``, the part of the activations the concepts do not reconstruct, and ``bias`` the head's constant
(``h(UW) - sum_k contribution_k``). Otherwise only ``h(UW)`` against ``h(A)`` is known (``decomposition`` says
which). All figures are means over the class's usable images, read from the importance and concepts files.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: the fidelity scores of each importance method (attribute ``<method>_<score>`` of the importance file)
FIDELITY_SCORES = ("c_deletion", "c_insertion", "c_mufidelity")
#: the importance methods the diagnostics table has columns for
TABLE_METHODS = ("sobol", "gradient", "occlusion")

#: one plain-language line per figure, shown beside it on the class page and in ``concepts info``
EXPLANATIONS: dict[str, str] = {
    "explained_share": "how much of the model's score for this class the concepts carry (100% = all of it)",
    "residual_share": "what the concepts miss: the part of the activations they do not reconstruct, still read "
                      "by the model",
    "bias_share": "the head's constant for the class, the same on every image (no concept can carry it)",
    "rel_error": "how far the concepts are from reproducing the activations (0 = exactly, 1 = not at all)",
    "converged": "whether the factorisation met its tolerance; if not, the concepts are an unfinished fit",
    "logit_correlation": "whether the concepts alone rank the images like the model does (1 = same order)",
    "c_deletion": "remove concepts most important first: a fast drop of the score (low value) means the ranking "
                  "found the concepts that matter",
    "c_insertion": "add concepts most important first: a fast rise (high value) means the same",
    "c_mufidelity": "on random sets of concepts, does the summed importance predict the score drop? (1 = always)",
}

#: the columns of ``exports/diagnostics.csv``, with their meaning
DIAGNOSTIC_COLUMNS: dict[str, str] = {
    "class_id": "class identifier (folder name / WordNet id)",
    "stem": "file stem of the class's artefacts",
    "class_index": "index of the class logit in the model output (-1 if unknown)",
    "class_name": "human-readable class name",
    "n_images": "usable images of the class (every figure below is a mean over them)",
    "decomposition": "exact: logit = bias + concept contributions + residual (global-average-pool + linear head, "
                     "gradient x input in closed form); reconstruction: only h(UW) against h(A) is known; "
                     "none: no importance file",
    "logit": "mean class logit of the model, h(A), in logit units",
    "logit_reconstructed": "mean class logit of the concepts' reconstruction alone, h(UW) (includes the bias)",
    "logit_concepts": "sum over concepts of their mean contribution to the logit (gradient x input), logit units",
    "logit_bias": "the head's bias for the class, h(UW) - logit_concepts (exact decomposition only)",
    "logit_residual": "h(A) - h(UW): the logit carried by what the concepts do not reconstruct",
    "explained_share": "logit_concepts / logit (exact) or logit_reconstructed / logit (reconstruction): the "
                       "share of the logit explained by the concepts; NaN when the mean logit is not positive",
    "residual_share": "logit_residual / logit",
    "bias_share": "logit_bias / logit (exact decomposition only)",
    "logit_correlation": "Pearson correlation over images between h(UW) and h(A)",
    "rel_error": "relative l2 reconstruction error ||A - UW|| / ||A|| over the rows of the concepts file",
    "rel_error_positions": "the same at the feature-map positions the importance stage explains",
    "converged": "1 when the factorisation met its tolerance, 0 when it stopped at its iteration limit",
    "n_iter": "iterations of the factorisation",
    "max_iter": "its iteration limit (-1 if not recorded)",
    **{f"{m}_{s}": text for m in TABLE_METHODS for s, text in (
        ("c_deletion", f"C-Deletion of the {m} ranking: area under the mean score curve as concepts are removed, "
                       "most important first (lower is better)"),
        ("c_insertion", f"C-Insertion of the {m} ranking: the same as concepts are added (higher is better)"),
        ("c_mufidelity", f"C-muFidelity of {m}: mean correlation between the score drop of random concept subsets "
                         "and their summed per-image importance (higher is better)"))},
}


@dataclass
class Diagnostics:
    """The figures of one class (NaN where a file does not record them)."""

    class_id: str
    stem: str
    class_index: int
    class_name: str
    n_images: int
    decomposition: str = "none"
    logit: float = np.nan
    logit_reconstructed: float = np.nan
    logit_concepts: float = np.nan
    logit_bias: float = np.nan
    logit_residual: float = np.nan
    explained_share: float = np.nan
    residual_share: float = np.nan
    bias_share: float = np.nan
    logit_correlation: float = np.nan
    rel_error: float = np.nan
    rel_error_positions: float = np.nan
    converged: int = -1  # 1, 0, or -1 when not recorded
    n_iter: int = -1
    max_iter: int = -1
    fidelity: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> score -> value

    def row(self) -> dict[str, Any]:
        """One row of the diagnostics table (the columns of :data:`DIAGNOSTIC_COLUMNS`)."""
        out = {k: v for k, v in asdict(self).items() if k != "fidelity"}
        for m in TABLE_METHODS:
            for s in FIDELITY_SCORES:
                out[f"{m}_{s}"] = self.fidelity.get(m, {}).get(s, np.nan)
        return {k: out[k] for k in DIAGNOSTIC_COLUMNS}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _fit(data) -> dict[str, Any]:
    attrs = data.concept_attrs
    converged = attrs.get("converged")
    params = attrs.get("params") if isinstance(attrs.get("params"), dict) else {}
    return {"rel_error": _float(attrs.get("rel_error")),
            "converged": -1 if converged is None else int(bool(converged)),
            "n_iter": int(attrs.get("n_iter", -1) if attrs.get("n_iter") is not None else -1),
            "max_iter": int(params.get("max_iter", -1) if params.get("max_iter") is not None else -1)}


def _decomposition(data) -> dict[str, Any]:
    """The split of the mean logit (see the module docstring)."""
    fid = data.fidelity_attrs
    original = _float(fid.get("reconstruction_logit_original"))
    recon = _float(fid.get("reconstruction_logit_reconstructed"))
    if not np.isfinite(original):
        kept = data.logit[data.kept] if data.n_images else np.zeros(0)
        original = float(np.nanmean(kept)) if len(kept) and np.isfinite(kept).any() else float("nan")
    out: dict[str, Any] = {"logit": original, "logit_reconstructed": recon,
                           "logit_correlation": _float(fid.get("reconstruction_logit_correlation")),
                           "rel_error_positions": _float(fid.get("reconstruction_relative_error"))}
    if not data.methods or not np.isfinite(recon):
        return out
    out["logit_residual"] = original - recon
    gradient = data.methods.get("gradient")
    exact = gradient is not None and bool(data.importance_attrs.get("linear_head")) \
        and bool(gradient.attrs.get("exact"))
    positive = np.isfinite(original) and original > 0
    if exact:
        concepts = float(np.nansum(np.asarray(gradient.class_importance, np.float64)))
        out.update(decomposition="exact", logit_concepts=concepts, logit_bias=recon - concepts)
        if positive:
            out.update(explained_share=concepts / original, residual_share=(original - recon) / original,
                       bias_share=(recon - concepts) / original)
    else:
        out["decomposition"] = "reconstruction"
        if positive:
            out.update(explained_share=recon / original, residual_share=(original - recon) / original)
    return out


def class_diagnostics(data) -> Diagnostics:
    """The diagnostics of one class (``data``: a :class:`~concepts.schema.classdata.ClassData`)."""
    fid = data.fidelity_attrs
    fidelity = {m: {s: _float(fid[f"{m}_{s}"]) for s in FIDELITY_SCORES if f"{m}_{s}" in fid}
                for m in data.methods}
    return Diagnostics(class_id=data.class_id, stem=data.stem, class_index=int(data.class_index),
                       class_name=data.class_name, n_images=int(data.n_images), **_fit(data),
                       **_decomposition(data), fidelity={m: v for m, v in fidelity.items() if v})
