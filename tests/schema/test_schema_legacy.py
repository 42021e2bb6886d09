"""Runs written by concepts 0.1 (before the schema, artefact format 1) are still read by `info`, `atlas` and
`export` (tests/fixtures/legacy_v0_1 was made by the old writers; its README says how)."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from concepts.cli import main
from concepts.export import load_export
from concepts.schema import open_run

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_v0_1"


@pytest.fixture(params=["patches", "crops"])
def legacy_run(request, tmp_path):
    run = tmp_path / request.param
    shutil.copytree(LEGACY / request.param, run)
    return run


def test_info_atlas_export_read_a_legacy_run(legacy_run, capsys):
    assert main(["info", str(legacy_run)]) == 0
    out = capsys.readouterr().out
    assert "stages done: extract 2/2, factorize 2/2, importance 2/2" in out and "synth_cnn" in out
    with warnings.catch_warnings():  # the photos of the old run lived under /tmp: usually "not found" (grey)
        warnings.simplefilter("ignore")
        assert main(["atlas", str(legacy_run), "--quiet", "--no-sheets"]) == 0
    pages = sorted(p.name for p in (legacy_run / "atlas" / "classes").glob("*.html"))
    assert pages == ["0_zebra.html", "1_chess.html"]
    assert main(["export", str(legacy_run), "--quiet"]) == 0
    exported = load_export(legacy_run)
    folder = open_run(legacy_run)
    for class_id in folder.classes("importance"):
        record = folder.importance(class_id, maps=False)
        assert record.attrs.get("format_version", 1) == 1  # read as written, not upgraded
        for method, imp in record.methods.items():
            np.testing.assert_array_equal(exported.share(class_id, method), imp.share)
        np.testing.assert_array_equal(exported.banks[class_id], folder.concepts(class_id).components)


def test_a_stage_rerun_over_a_legacy_file_says_what_to_do(legacy_run, capsys):
    """Its settings were hashed the 0.1 way: the stage cannot compare them and says so (no silent reuse)."""
    assert main(["factorize", str(legacy_run), "--quiet", "--concepts", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "written by concepts 0.1.0 (artefact format 1)" in err and "--overwrite" in err
