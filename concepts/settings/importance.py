"""``importance``: how concepts are ranked against the class score (stage 3)."""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import model_validator

from ..importance.registry import ESTIMATORS, METHODS, SAMPLERS
from .base import Section, setting


class ImportanceSettings(Section):
    """Stage 3: per-image and class importances of the concepts, concept maps and fidelity metrics."""

    section = "importance"

    methods: tuple[str, ...] = setting(METHODS.names(), "importance methods (repeat or comma-separate)",
                                       flag="--method", run_flag="--importance", choices=METHODS.names,
                                       normalize=METHODS.normalize, min_length=1, metavar="NAME")
    designs: int = setting(32, "quasi-Monte-Carlo designs of Sobol (N(r+2) evaluations per image)", ge=2)
    sampler: Literal[SAMPLERS] = setting("halton", "mask sequence of Sobol (unscrambled Halton, as CRAFT)")
    estimator: Literal[ESTIMATORS] = setting("jansen", "total-order Sobol estimator")
    seed: int = setting(0, "seed of scrambled sequences and random subsets", ge=0, run_flag="--importance-seed")
    residual: bool = setting(True, "add the residual A - UW back to every perturbation (--no-residual: CRAFT's "
                                   "(U*M)W alone)")
    exact: Literal["auto", "off", "always"] = setting("auto", "closed forms for a global-average-pool + linear head")
    score: Literal["logit", "probability"] = setting("logit", "score of the fidelity metrics")
    steps: Union[int, None] = setting(None, "C-Deletion/Insertion steps (default: one per concept)", ge=1)
    n_subsets: int = setting(128, "random concept subsets of C-muFidelity", ge=1)
    correlation: Literal["spearman", "pearson"] = setting("spearman", "correlation of C-muFidelity")
    confidence: float = setting(0.95, "level of the confidence intervals across images", gt=0, lt=1)
    batch_size: int = setting(64, "perturbed activations per forward pass of the head", ge=1, hashed=False,
                              run_flag="--importance-batch-size")
    image_block: int = setting(256, "images held in memory at a time", ge=1, hashed=False, stage_cli=False)

    @model_validator(mode="before")
    @classmethod
    def _legacy_params(cls, raw: Any) -> Any:
        """Configs of 0.1 put these settings in ``importance.params``: read them as the fields they are now."""
        if isinstance(raw, dict) and isinstance(raw.get("params"), dict):
            raw = dict(raw)
            raw.update(raw.pop("params"))
        return raw
