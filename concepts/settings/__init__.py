"""The settings of every stage, defined once (one frozen model per config section).

From these models come the stage functions' accepted keywords (:func:`stage_config`), the YAML config sections
(:class:`RunConfig`), the CLI flags of each stage command and of ``concepts run`` (:mod:`concepts.settings.cli`),
the resolved ``RUN/config.yaml`` and the part of each artefact's config hash that settings decide
(:meth:`Section.hashed`). Importing this package is cheap (no torch).
"""
from .atlas import AtlasSettings
from .base import Section, SettingsError, build_section, describe, setting
from .data import DataSettings
from .executor import ExecutorSettings
from .export import FORMATS, ExportSettings
from .extract import MODES, ExtractSettings
from .factorize import FactorizeSettings
from .fviz import FvizSettings
from .importance import ImportanceSettings
from .label import LabelSettings
from .model import ModelSettings
from .probe import ProbeSettings
from .run import (SECTIONS, STAGE_SETTINGS, RunConfig, config_from_dict, load_config, parse_override, stage_config,
                  stage_fields)

__all__ = [
    "Section", "SettingsError", "build_section", "describe", "setting", "RunConfig", "SECTIONS", "STAGE_SETTINGS",
    "DataSettings", "ModelSettings", "ExtractSettings", "FactorizeSettings", "ImportanceSettings", "FvizSettings",
    "AtlasSettings", "ExportSettings", "ExecutorSettings", "ProbeSettings", "LabelSettings", "MODES", "FORMATS",
    "config_from_dict", "load_config", "parse_override",
    "stage_config", "stage_fields",
]
