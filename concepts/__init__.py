"""concepts: explain what a vision model has learned, one class at a time, in human-readable concepts.

The data flow, one function per stage (each reads the artefacts of the one before)::

    import concepts
    concepts.extract_run("images/", "run/", classes=["n01440764"])  # RUN/activations/<class>.h5
    concepts.factorize_run("run/", method="nmf", n_concepts=10)       # RUN/concepts/<class>.h5
    concepts.importance_run("run/")                                    # RUN/importance/<class>.h5
    concepts.fviz_run("run/")                                          # RUN/fviz/<class>.h5 (optional)
    concepts.build_atlas("run/"); concepts.export_run("run/")          # RUN/atlas/, RUN/exports/

(The sub-packages ``concepts.extract``, ``concepts.factorize`` ... hold the building blocks.)
Names are imported lazily so that ``import concepts`` and the CLI start fast. Importing changes nothing in the
process; ``concepts.configure_process()`` applies, once, what the CLI applies at start-up (allocator tuning).
"""
from __future__ import annotations

import importlib

from ._version import __version__
from .errors import ConceptsError, ConfigMismatchError

_LAZY = {
    # stage functions
    "extract_run": ("concepts.extract", "extract_run"),
    "factorize_run": ("concepts.factorize", "factorize_run"),
    "importance_run": ("concepts.importance", "importance_run"),
    "fviz_run": ("concepts.fviz", "fviz_run"),
    "build_atlas": ("concepts.atlas", "build_atlas"),
    "write_sheets": ("concepts.atlas", "write_sheets"),
    "export_run": ("concepts.export", "export_run"),
    "run_pipeline": ("concepts.pipeline", "run_pipeline"),
    "run_demo": ("concepts.pipeline.demo", "run_demo"),
    # settings
    "RunConfig": ("concepts.settings", "RunConfig"),
    "load_config": ("concepts.settings", "load_config"),
    # readers
    "open_run": ("concepts.schema", "open_run"),
    "ActivationCache": ("concepts.schema", "ActivationCache"),
    "open_activations": ("concepts.extract", "open_activations"),
    "list_classes": ("concepts.extract", "list_classes"),
    "load_concepts": ("concepts.factorize", "load_concepts"),
    "load_importance": ("concepts.importance", "load_importance"),
    "load_fviz": ("concepts.fviz", "load_fviz"),
    "load_export": ("concepts.export", "load_export"),
    "run_summary": ("concepts.info", "run_summary"),
    # building blocks
    "configure_process": ("concepts.runtime", "configure_process"),
    "load_split": ("concepts.models", "load_split"),
    "ModelCache": ("concepts.models", "ModelCache"),
    "make_estimator": ("concepts.factorize", "make_estimator"),
    "NMF": ("concepts.factorize", "NMF"),
    "SemiNMF": ("concepts.factorize", "SemiNMF"),
    "SobolImportance": ("concepts.importance", "SobolImportance"),
    "GradientInput": ("concepts.importance", "GradientInput"),
    "Occlusion": ("concepts.importance", "Occlusion"),
}

__all__ = ["__version__", "ConceptsError", "ConfigMismatchError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'concepts' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
