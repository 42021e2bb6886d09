"""`concepts run` end to end on real photos: all stages, resume at class and stage granularity,
a finished run does no work, config changes are refused, worker processes and Slurm give the
same results as one process."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from concepts.schema import stage_path
from concepts.errors import ConceptsError
from concepts.pipeline import load_config, run_pipeline

ROOT = Path(__file__).resolve().parents[2]
# the shared data folder beside the project (/work/shared for /work/main, also found from a worktree /work/wt/NAME)
VAL50 = next((p / "shared" / "data" / "imagenette" / "val50" for p in ROOT.parents
              if (p / "shared" / "data" / "imagenette" / "val50").is_dir()), ROOT / ".." / "shared" / "data")
CLASSES = ["n01440764", "n03888257"]  # tench, parachute
STAGES = ("extract", "factorize", "importance")

pytestmark = pytest.mark.slow


def _need_stages():
    if not VAL50.is_dir():
        pytest.skip(f"shared Imagenette photos not found at {VAL50}")


def tiny(out, **extra):
    overrides = {
        "out": str(out), "data.images": str(VAL50), "data.classes": CLASSES, "data.max_images": 4,
        "extract.patch_size": 112, "extract.workers": 0, "factorize.n_concepts": 3,
        "importance.methods": ["sobol", "gradient"], "importance.designs": 8, "model.device": "cpu",
        "executor.threads": 1, "atlas.enabled": False, "export.formats": ["csv", "json"],
    }
    overrides.update(extra)
    return load_config(None, overrides)


def mtimes(run):
    return {(s, c): stage_path(run, s, c).stat().st_mtime_ns for s in STAGES for c in CLASSES}


def read_results(run, class_id):
    with h5py.File(stage_path(run, "factorize", class_id), "r") as f:
        components = f["components"][()]
    with h5py.File(stage_path(run, "importance", class_id), "r") as f:
        importance = {m: f[m]["class_importance"][()] for m in ("sobol", "gradient")}
    return components, importance


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    _need_stages()
    out = tmp_path_factory.mktemp("pipe") / "run"
    result = run_pipeline(tiny(out), progress=False)
    return out, result


def test_run_writes_every_stage_and_the_resolved_config(finished_run):
    run, result = finished_run
    assert sorted(result.processed) == CLASSES and result.skipped == []
    for stage in STAGES:
        for class_id in CLASSES:
            assert stage_path(run, stage, class_id).is_file()
    saved = load_config(run / "config.yaml")
    assert saved.factorize.n_concepts == 3 and saved.data.classes == tuple(CLASSES)
    assert Path(saved.out) == run.resolve() and Path(saved.data.images).is_absolute()
    assert (run / "exports").is_dir() and any((run / "exports").iterdir())
    assert result.reduced and set(result.seconds) >= {"extract", "factorize", "importance", "export"}
    for class_id in CLASSES:
        components, importance = read_results(run, class_id)
        assert components.shape[0] == 3 and np.all(np.isfinite(importance["sobol"]))


def test_rerun_of_finished_run_does_nothing(finished_run, capsys):
    run, _ = finished_run
    before = mtimes(run)
    result = run_pipeline(tiny(run), progress=True)
    assert result.nothing_to_do and result.processed == []
    assert "nothing to do" in capsys.readouterr().err
    assert mtimes(run) == before


def test_resume_redoes_only_missing_class_stages(finished_run, tmp_path):
    run, _ = finished_run
    # a copy of the run, with one class missing its importance and the other its concepts+importance
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    stage_path(copy, "importance", CLASSES[0]).unlink()
    stage_path(copy, "factorize", CLASSES[1]).unlink()
    stage_path(copy, "importance", CLASSES[1]).unlink()
    # (the copied config.yaml names the old folder; `out` is not part of the work signature)
    kept = {(s, c): stage_path(copy, s, c).stat().st_mtime_ns
            for s in STAGES for c in CLASSES if stage_path(copy, s, c).exists()}
    assert len(kept) == 3
    result = run_pipeline(tiny(copy), progress=False)
    assert sorted(result.processed) == CLASSES
    after = mtimes(copy)
    for key, value in kept.items():
        assert after[key] == value, f"{key} was redone"  # finished stages kept
    for class_id in CLASSES:  # same seed, same data: the redone stages give the same results
        (c_ref, i_ref), (c_got, i_got) = read_results(run, class_id), read_results(copy, class_id)
        np.testing.assert_allclose(c_got, c_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(i_got["sobol"], i_ref["sobol"], rtol=1e-3, atol=1e-5)


def test_changed_settings_are_refused_not_mixed(finished_run):
    run, _ = finished_run
    with pytest.raises(ConceptsError, match="other settings .*n_concepts 3 -> 4"):
        run_pipeline(tiny(run, **{"factorize.n_concepts": 4}), progress=False)
    # the saved config still describes the artefacts on disk
    assert load_config(run / "config.yaml").factorize.n_concepts == 3


def test_cli_run_says_nothing_to_do(finished_run, capsys):
    from concepts.cli import main

    run, _ = finished_run
    assert main(["run", str(run / "config.yaml")]) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_worker_processes_match_in_process(finished_run, tmp_path):
    run, _ = finished_run
    out = tmp_path / "workers"
    result = run_pipeline(tiny(out, **{"executor.workers": 2, "executor.classes_per_task": 1}), progress=False)
    assert result.tasks == 2
    for class_id in CLASSES:
        (c_ref, i_ref), (c_got, i_got) = read_results(run, class_id), read_results(out, class_id)
        np.testing.assert_allclose(c_got, c_ref, rtol=1e-4, atol=1e-5)
        for method in i_ref:
            np.testing.assert_allclose(i_got[method], i_ref[method], rtol=1e-3, atol=1e-5)


@pytest.mark.slurm
def test_slurm_run_matches_local(request, tmp_path, capsys, monkeypatch):
    from test_pipeline_executors import slurm_ready

    reason = slurm_ready()
    if reason:
        pytest.skip(reason)
    run, _ = request.getfixturevalue("finished_run")
    out = tmp_path / "slurm-run"
    from concepts.cli import main

    monkeypatch.chdir(tmp_path)  # Slurm jobs start in the submitting directory
    cmd = ["run", "--out", str(out), "--images", str(VAL50),
           "--classes", ",".join(CLASSES), "--max-images", "4", "--patch-size", "112", "--concepts", "3",
           "--importance", "sobol,gradient", "--designs", "8", "--device", "cpu", "--threads", "1",
           "--set", "extract.workers=0", "--no-atlas", "--set", "export.formats=[csv,json]",
           "--executor", "slurm", "--cpus-per-task", "1", "--classes-per-task", "1", "--timeout-min", "10"]
    assert main(cmd) == 0
    assert "submitted Slurm job array" in capsys.readouterr().err
    logs = list((out / "slurm").rglob("*_log.out"))
    assert len(logs) == 2  # one array task per class
    for class_id in CLASSES:
        (c_ref, i_ref), (c_got, i_got) = read_results(run, class_id), read_results(out, class_id)
        np.testing.assert_allclose(c_got, c_ref, rtol=1e-4, atol=1e-5)
        for method in i_ref:
            np.testing.assert_allclose(i_got[method], i_ref[method], rtol=1e-3, atol=1e-5)
    assert (out / "exports").is_dir()
    # re-submitting skips the finished classes: no new job
    assert main(cmd) == 0
    again = capsys.readouterr().err
    assert "nothing to do" in again and "submitted" not in again


def test_interrupted_run_resumes_at_class_and_stage(finished_run, tmp_path, monkeypatch):
    import concepts.importance as importance_module

    run, _ = finished_run
    out = tmp_path / "interrupted"
    real = importance_module.importance_run
    calls = []

    def interrupt_second_class(*args, **kwargs):
        calls.append(list(kwargs["classes"]))
        if CLASSES[1] in kwargs["classes"]:
            raise KeyboardInterrupt  # Ctrl-C while the second task computes importance
        return real(*args, **kwargs)

    monkeypatch.setattr(importance_module, "importance_run", interrupt_second_class)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny(out, **{"executor.classes_per_task": 1}), progress=False)
    assert stage_path(out, "importance", CLASSES[0]).exists()
    assert stage_path(out, "factorize", CLASSES[1]).exists()
    assert not stage_path(out, "importance", CLASSES[1]).exists()
    assert calls == [[CLASSES[0]], [CLASSES[1]]]  # one class per task, as asked
    kept = {(s, c): stage_path(out, s, c).stat().st_mtime_ns for s in STAGES for c in CLASSES
            if stage_path(out, s, c).exists()}
    monkeypatch.setattr(importance_module, "importance_run", real)
    result = run_pipeline(tiny(out, **{"executor.classes_per_task": 1}), progress=False)
    assert result.processed == [CLASSES[1]] and result.skipped == [CLASSES[0]]
    assert {k: stage_path(out, *k).stat().st_mtime_ns for k in kept} == kept  # nothing finished was redone
    c_ref, i_ref = read_results(run, CLASSES[1])
    c_got, i_got = read_results(out, CLASSES[1])
    np.testing.assert_allclose(i_got["sobol"], i_ref["sobol"], rtol=1e-3, atol=1e-5)


def test_enabling_fviz_adds_only_its_stage_and_the_exports_list_its_images(finished_run, tmp_path):
    """fviz is off by default; turned on in a finished run it adds RUN/fviz/<class>.h5 (the other stages are
    skipped as done), the reduce step runs again and the exports list the PNGs with their sha256."""
    import json
    import shutil

    from concepts.schema import file_sha256

    run, _ = finished_run
    assert not (run / "fviz").exists()
    copy = tmp_path / "with-fviz"
    shutil.copytree(run, copy)
    before = mtimes(copy)
    fviz = {"fviz.enabled": True, "fviz.steps": 2, "fviz.crops": 1, "fviz.image_size": 64, "fviz.batch": 8}
    result = run_pipeline(tiny(copy, **fviz), progress=False)
    assert sorted(result.processed) == CLASSES and "fviz" in result.seconds and result.reduced
    assert mtimes(copy) == before  # extract, factorize, importance: already done
    manifest = json.loads((copy / "exports" / "manifest.json").read_text())
    for class_id in CLASSES:
        assert stage_path(copy, "fviz", class_id).is_file()
        for name in ("concept_0.png", "concept_2_alpha.png", "logit.png"):
            entry = manifest["files"][f"fviz/{class_id}/{name}"]
            assert entry["sha256"] == file_sha256(copy / "exports" / "fviz" / class_id / name)
    again = run_pipeline(tiny(copy, **fviz), progress=False)
    assert again.nothing_to_do


def test_per_class_warnings_become_one_line_for_the_run(tmp_path, capsys):
    """Two tasks whose classes have fewer images than concepts: one summary line names both, none per class."""
    _need_stages()
    cfg = tiny(tmp_path / "few", **{"data.max_images": 2, "executor.classes_per_task": 1})
    result = run_pipeline(cfg, progress=True)
    err = capsys.readouterr().err
    assert result.tasks == 2
    assert result.warnings["factorize:few_images"] == {c: "2 usable images for 3 concepts" for c in CLASSES}
    lines = [line for line in err.splitlines() if "fewer usable images than concepts" in line]
    assert len(lines) == 1 and all(c in lines[0] for c in CLASSES), err
    assert "has 2 usable images" not in err  # the per-class lines of the tasks are not printed


def test_an_empty_class_folder_is_listed_as_skipped_not_dropped(tmp_path, capsys):
    """A class folder without files is reported (warning, summary, last_run.json), and the other class still runs."""
    import json

    _need_stages()
    images = tmp_path / "images"
    (images / "empty").mkdir(parents=True)
    (images / CLASSES[0]).mkdir()
    for photo in sorted((VAL50 / CLASSES[0]).iterdir())[:2]:
        (images / CLASSES[0] / photo.name).symlink_to(photo)
    cfg = tiny(tmp_path / "run", **{"data.images": str(images), "data.classes": [], "factorize.n_concepts": 2})
    result = run_pipeline(cfg, progress=True)
    err = capsys.readouterr().err
    assert result.skipped_classes == {"empty": "its folder holds no image file"}
    assert "1 class folder without any file, skipped: empty" in err and "1 skipped (empty:" in err
    assert stage_path(tmp_path / "run", "importance", CLASSES[0]).exists()
    saved = json.loads((tmp_path / "run" / "pipeline" / "last_run.json").read_text())
    assert saved["skipped_classes"] == {"empty": "its folder holds no image file"}
