"""Fixtures of the export tests: the fabricated run of tests/atlas (contract-following artefacts)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "atlas"))
from atlas_fakerun import make_fake_run  # noqa: E402


@pytest.fixture(scope="session")
def export_fake_run(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("export_fake_run")
    return root, make_fake_run(root)
