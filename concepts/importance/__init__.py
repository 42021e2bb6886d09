"""Stage 3: concept importance (Sobol total indices, gradient x input, occlusion), concept
attribution maps and concept fidelity metrics. Names are imported on first use."""
from .._lazy import lazy_attributes

_PUBLIC = {
    "SobolImportance": ".methods", "GradientInput": ".methods", "Occlusion": ".methods",
    "ImportanceResult": ".methods", "make_method": ".methods", "aggregate": ".methods",
    "METHODS": ".registry",
    "ConceptScorer": ".perturb",
    "importance_run": ".stage", "importance_class": ".stage", "load_importance": ".stage",
    "c_deletion": ".fidelity", "c_insertion": ".fidelity", "c_mufidelity": ".fidelity",
    "reconstruction_fidelity": ".fidelity",
    "presence_maps": ".maps", "contribution_maps": ".maps", "crop_heatmaps": ".maps", "upsample": ".maps",
    "to_grid": ".maps",
    "qmc_points": ".sobol", "sobol_design": ".sobol", "total_indices": ".sobol", "sobol_total_indices": ".sobol",
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)
