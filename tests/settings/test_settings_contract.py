"""The settings models are the one definition of every parameter: a new field appears everywhere without another
edit, every numeric setting has a range with the same error text from a flag, a YAML key and Python, and the stage
keywords and flags are unambiguous."""
from __future__ import annotations

import typing
from types import SimpleNamespace

import pytest
import yaml
from pydantic import Field, create_model

import concepts.settings.run as settings_run
from concepts.cli import build_parser, main
from concepts.errors import ConceptsError
from concepts.settings import SECTIONS, STAGE_SETTINGS, ExtractSettings, RunConfig, load_config, setting
from concepts.settings.base import meta
from concepts.settings.cli import flag_of


@pytest.fixture()
def with_jitter(monkeypatch):
    """A new extract parameter, declared once (the one edit of docs/ARCHITECTURE.md's example)."""

    class Extended(ExtractSettings):
        jitter: float = setting(0.0, "random shift of the crop grid, in crops", ge=0, le=0.5)

    run = create_model("RunConfig", __base__=RunConfig, extract=(Extended, Field(default_factory=Extended)))
    monkeypatch.setattr(settings_run, "RunConfig", run)
    monkeypatch.setitem(settings_run.SECTIONS, "extract", Extended)
    return run


def test_a_new_parameter_appears_everywhere(with_jitter, tmp_path, capsys):
    cfg = settings_run.load_config(None, {"extract.jitter": 0.25})
    assert cfg.extract.jitter == 0.25 and yaml.safe_load(cfg.to_yaml())["extract"]["jitter"] == 0.25
    with pytest.raises(ConceptsError, match=r"^extract.jitter: 0.9 is not allowed; expected a number from 0 to 0.5$"):
        settings_run.load_config(None, {"extract.jitter": 0.9})
    assert settings_run.stage_config("extract", None, jitter=0.1).extract.jitter == 0.1
    for command in (["extract", "--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
        assert "--jitter" in capsys.readouterr().out
    args = build_parser().parse_args(["extract", "imgs", "--out", str(tmp_path), "--jitter", "0.2"])
    from concepts.cli.common import stage_settings

    assert stage_settings(args, "extract", {"data.images": "imgs"}).extract.jitter == 0.2
    # the config hash of the activations changes with it
    from concepts.extract.stage import _job

    info = {"model": "m", "weights_sha256": "0", "layer": "features", "preprocessing": {}}
    label = SimpleNamespace(index=0, source="test", name="c")
    hashes = {_job(settings_run.load_config(None, {"out": str(tmp_path), "extract.jitter": j}), None, info, "c", [],
                   label, False).wanted().config_hash for j in (0.0, 0.1)}
    assert len(hashes) == 2


NUMERIC = [(section, name, field) for section, cls in SECTIONS.items() for name, field in cls.model_fields.items()
           if {int, float} & {a for a in typing.get_args(field.annotation) or (field.annotation,)}]


@pytest.mark.parametrize("section, name, field", NUMERIC, ids=[f"{s}.{n}" for s, n, _ in NUMERIC])
def test_every_numeric_setting_has_a_range_and_one_error_text(section, name, field, tmp_path):
    from concepts.settings.base import _bounds

    bounds = _bounds(field.metadata) or _bounds([m for a in typing.get_args(field.annotation)
                                                 for item in typing.get_args(a)[1:] for m in item.metadata])
    assert {"ge", "gt"} & set(bounds), f"{section}.{name} has no lower bound"
    low = bounds.get("ge", bounds.get("gt"))
    bad = low - 1 if "ge" in bounds else low
    key = f"{section}.{name}"
    with pytest.raises(ConceptsError) as from_python:
        load_config(None, {key: bad})
    text = str(from_python.value)
    assert text.startswith(f"{key}: {bad!r} is not allowed; expected ") and "\n" not in text
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({section: {name: bad}}))
    with pytest.raises(ConceptsError) as from_yaml:
        load_config(tmp_path / "c.yaml")
    assert str(from_yaml.value) == text
    flag = flag_of(key, field, "run")
    args = build_parser().parse_args(["run", flag, str(bad)])
    from concepts.cli.run import overrides_from_args

    with pytest.raises(ConceptsError) as from_flag:
        load_config(None, overrides_from_args(args))
    assert str(from_flag.value).replace("'", "") == text.replace("'", "")  # a flag's value arrives as text


@pytest.mark.parametrize("stage", list(STAGE_SETTINGS))
def test_stage_keywords_and_flags_are_unambiguous(stage):
    if stage != "run":  # `concepts run` takes a config, not keywords
        words = settings_run.keyword_map(stage)  # raises on a clash
        assert len(words) == len(settings_run.stage_fields(stage))
    flags = [flag_of(k, f, stage) for k, f in settings_run.stage_fields(stage)
             if stage == "run" or meta(f)["stage_cli"]]
    assert len(flags) == len(set(flags))
    build_parser()  # argparse refuses a flag declared twice
