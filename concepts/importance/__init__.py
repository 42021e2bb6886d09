"""Stage 3: concept importance (Sobol total indices, gradient x input, occlusion), concept
attribution maps and concept fidelity metrics."""
from .fidelity import c_deletion, c_insertion, c_mufidelity, reconstruction_fidelity
from .maps import contribution_maps, crop_heatmaps, presence_maps, to_grid, upsample
from .methods import METHODS, GradientInput, ImportanceResult, Occlusion, SobolImportance, aggregate, make_method
from .perturb import ConceptScorer
from .sobol import qmc_points, sobol_design, sobol_total_indices, total_indices
from .stage import importance_class, importance_run, load_importance

__all__ = [
    "SobolImportance", "GradientInput", "Occlusion", "ImportanceResult", "METHODS", "make_method", "aggregate",
    "ConceptScorer",
    "importance_run", "importance_class", "load_importance",
    "c_deletion", "c_insertion", "c_mufidelity", "reconstruction_fidelity",
    "presence_maps", "contribution_maps", "crop_heatmaps", "upsample", "to_grid",
    "qmc_points", "sobol_design", "total_indices", "sobol_total_indices",
]
