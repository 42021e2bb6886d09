"""The artefact contract as code: the docs tables are the specs', only the schema opens HDF5 files, every read is
checked (damaged, other stage, unknown version, incomplete), every write is atomic."""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from concepts.errors import ArtefactError, ConceptsError
from concepts.schema import SPECS, ConceptsWriter, open_run, read_concepts, stage_path
from concepts.schema.hdf5 import atomic_artefact, remove_orphan_temporaries, temporary_name
from fake_artefacts import write_activations, write_concepts

ROOT = Path(__file__).resolve().parents[2]


def test_architecture_doc_shows_the_specs_tables():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    for stage, spec in SPECS.items():
        assert spec.markdown() in doc, f"docs/ARCHITECTURE.md is out of date for {stage}: " \
                                       f"run `python -m concepts.schema.docs --write docs/ARCHITECTURE.md`"


def test_only_the_schema_opens_hdf5_files():
    offenders = []
    for path in (ROOT / "concepts").rglob("*.py"):
        if "schema" in path.relative_to(ROOT / "concepts").parts:
            continue
        if re.search(r"h5py\.File\(", path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.fixture()
def run(tmp_path):
    rng = np.random.default_rng(0)
    write_activations(tmp_path, "a", rng.random((3, 4, 5)).astype(np.float32))
    write_concepts(tmp_path, "a", rng.random((2, 5)), rng.random((12, 2)))
    return tmp_path


def test_a_truncated_file_is_an_error_naming_it_and_the_fix(run):
    path = stage_path(run, "factorize", "a")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtefactError, match=r"concepts/a\.h5 is damaged .*rerun `concepts factorize --overwrite`"):
        read_concepts(path)
    with pytest.raises(ArtefactError, match="1 damaged file"):
        open_run(run).classes("factorize")  # never a class silently left out


def test_a_file_of_another_stage_or_version_or_incomplete_is_refused(run, tmp_path):
    other = tmp_path / "other.h5"
    other.write_bytes(stage_path(run, "extract", "a").read_bytes())
    with pytest.raises(ArtefactError, match="is not a factorize artefact"):
        read_concepts(other)
    path = stage_path(run, "factorize", "a")
    with h5py.File(path, "a") as handle:
        handle.attrs["format_version"] = 99
    with pytest.raises(ArtefactError, match="format version 99.*upgrade"):
        read_concepts(path)
    with h5py.File(path, "a") as handle:
        handle.attrs["format_version"] = 2
        del handle["components"]
    with pytest.raises(ArtefactError, match="incomplete \\(no components\\)"):
        read_concepts(path)


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(run):
    path = stage_path(run, "factorize", "a")
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with ConceptsWriter(path, n_rows=3, n_concepts=2) as writer:
            writer.write_components(np.ones((2, 5)))
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="closed without finish"):
        with ConceptsWriter(path, n_rows=3, n_concepts=2):
            pass
    assert path.read_bytes() == before
    assert not list(path.parent.glob("*.tmp"))


def test_a_full_disk_is_one_line_and_frees_the_partial_file(run, monkeypatch):
    path = stage_path(run, "factorize", "a")
    before = path.read_bytes()
    with pytest.raises(ConceptsError) as info:
        with atomic_artefact(path) as handle:
            handle.create_dataset("x", data=np.zeros(10))
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value).startswith("no space left on device while writing") and "\n" not in str(info.value)
    assert "freed the partial file" in str(info.value)
    assert path.read_bytes() == before and not list(path.parent.glob("*.tmp"))


def test_temporary_names_are_unique_per_process_and_orphans_are_cleaned(tmp_path):
    target = tmp_path / "c.h5"
    assert temporary_name(target) != temporary_name(target)
    assert str(os.getpid()) in temporary_name(target).name
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    orphan = temporary_name(target)
    orphan = orphan.with_name(orphan.name.replace(f"-{os.getpid()}-", f"-{pid}-"))
    orphan.write_bytes(b"partial")
    mine = temporary_name(target)
    mine.write_bytes(b"in progress")  # a live writer's file is left alone
    assert remove_orphan_temporaries(target) == [orphan]
    assert mine.exists() and not orphan.exists()
