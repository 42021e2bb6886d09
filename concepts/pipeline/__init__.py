"""The whole-job pipeline (``concepts run``): driver and executors (the config is :mod:`concepts.settings`)."""
from ..settings import RunConfig, config_from_dict, load_config, parse_override
from .executors import Executor, LocalExecutor, SlurmExecutor
from .run import PipelineResult, run_pipeline

__all__ = [
    "RunConfig",
    "load_config",
    "config_from_dict",
    "parse_override",
    "run_pipeline",
    "PipelineResult",
    "Executor",
    "LocalExecutor",
    "SlurmExecutor",
]
