"""Which classes of a run are finished, checked on the files themselves (not on a saved config).

A class is finished when its three stage files are readable, chained (each made from the files now on disk), made
with the settings of the config (the activations: the settings and the model asked for; concepts and importance:
their config hash) and when its activations list the images that are now in its folder. A file made with other
settings is a :class:`~concepts.errors.ConfigMismatchError` naming the settings that differ (unless
``overwrite``), raised before any model is loaded. Nothing here loads a model.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigMismatchError
from ..schema import RunFolder, config_hash
from ..schema.hdf5 import peek_attrs
from ..schema.lineage import Wanted, class_status, existing_status, input_record, settings_diff
from ..settings import RunConfig


def _extract_matches(cfg: RunConfig, path: Path, files: list[Path], overwrite: bool, layer=None) -> bool:
    from ..extract.stage import image_listing, model_request, wanted_settings

    attrs = peek_attrs(path)
    recorded = attrs.get("config") or {}
    if int(attrs.get("format_version", 1)) < 2:
        if overwrite:
            return False
        raise ConfigMismatchError(f"{path} was written by concepts {attrs.get('package_version', '0.1')} (artefact "
                                  "format 1), whose settings cannot be compared; pass --overwrite to recompute it, "
                                  "or use a new run folder")
    wanted = {"settings": wanted_settings(cfg), "request": model_request(cfg, layer)}
    if {k: recorded.get(k) for k in wanted} != wanted:
        if overwrite:
            return False
        raise ConfigMismatchError(f"{path} was made with other settings ({settings_diff(recorded, wanted)}); pass "
                                  "--overwrite to replace it, or use a new run folder")
    listed = ((attrs.get("inputs") or {}).get("images") or {}).get("creation_id")
    return listed == image_listing(files)


def _dictionary_matches(cfg: RunConfig, folder: RunFolder, class_id: str, overwrite: bool) -> bool:
    """The shared dictionary was made with these settings, from this class's current activations."""
    from ..factorize.stage import dictionary_config

    attrs = peek_attrs(folder.dictionary_file)
    config = {"stage": "dictionary", **dictionary_config(cfg)}
    if attrs.get("config_hash") != config_hash(config):
        if overwrite:
            return False
        raise ConfigMismatchError(f"{folder.dictionary_file} was made with other settings "
                                  f"({settings_diff(attrs.get('config'), config)}); pass --overwrite to refit it")
    current = input_record(peek_attrs(folder.file("extract", class_id)))["creation_id"]
    return (attrs.get("class_activations") or {}).get(class_id) == current


def class_finished(cfg: RunConfig, folder: RunFolder, class_id: str, files: list[Path], *,
                   overwrite: bool = False) -> bool:
    """Whether ``class_id`` needs no work under ``cfg`` (see the module docstring), at every layer it lists."""
    from ..errors import ArtefactError

    for layer in cfg.model.layers:
        try:
            at = folder.at_layer(layer) if len(cfg.model.layers) > 1 else folder
        except ArtefactError:  # a layer not extracted yet
            return False
        if not _finished_at(cfg, at, class_id, files, overwrite, layer):
            return False
    return True


def _finished_at(cfg: RunConfig, folder: RunFolder, class_id: str, files: list[Path], overwrite: bool,
                 layer) -> bool:
    from ..factorize.stage import wanted_config as factorize_config
    from ..importance.stage import wanted_config as importance_config

    paths = {stage: folder.file(stage, class_id) for stage in ("extract", "factorize", "importance")}
    if cfg.factorize.scope == "dataset":
        paths["dictionary"] = folder.dictionary_file if folder.dictionary_file.exists() else None
    if any(state != "done" for state in class_status(paths, class_id).stages.values()):
        return False
    if not _extract_matches(cfg, paths["extract"], files, overwrite, layer):
        return False
    if cfg.factorize.scope == "dataset" and not _dictionary_matches(cfg, folder, class_id, overwrite):
        return False
    from ..heads.resolve import run_probe_record

    inputs = {"extract": input_record(peek_attrs(paths["extract"]))}
    for stage, config in (("factorize", factorize_config(cfg)), ("importance", importance_config(cfg))):
        wanted = dict(inputs)
        if stage == "importance" and run_probe_record(folder.path) is not None:  # the run's probe is its head
            wanted["head"] = run_probe_record(folder.path)
        if existing_status(paths[stage], Wanted(config, config_hash(config), wanted), overwrite, stage) != "done":
            return False
        inputs[stage] = input_record(peek_attrs(paths[stage]))
    if cfg.fviz.enabled:  # the optional stage: made with these settings from these files
        from ..fviz.stage import wanted_config as fviz_config

        path = folder.file("fviz", class_id)
        if not path.exists():
            return False
        config = fviz_config(cfg, concepts=peek_attrs(paths["factorize"]))
        wanted = Wanted(config, config_hash(config), {k: inputs[k] for k in ("extract", "factorize")})
        if existing_status(path, wanted, overwrite, "fviz") != "done":
            return False
    return True
