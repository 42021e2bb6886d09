"""Importance methods by name, and the names of the Sobol designs and estimators (listed without importing them)."""
from __future__ import annotations

from ..registry import Registry

METHODS = Registry(
    "importance method",
    {
        "sobol": "concepts.importance.methods:SobolImportance",
        "gradient": "concepts.importance.methods:GradientInput",
        "occlusion": "concepts.importance.methods:Occlusion",
    },
    aliases={"gradient_input": "gradient", "gradient-input": "gradient", "gxi": "gradient"},
)

#: quasi-Monte-Carlo sequences of the Sobol masks (unscrambled Halton is CRAFT's)
SAMPLERS = ("halton", "halton-scrambled", "sobol", "sobol-scrambled", "random")
#: total-order Sobol estimators
ESTIMATORS = ("jansen", "sobol2007")
