"""The run config: YAML -> frozen dataclasses, overrides, one-line errors naming key and allowed values."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from concepts.errors import ConceptsError
from concepts.pipeline import RunConfig, load_config
from concepts.settings import config_from_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_frozen():
    cfg = load_config()
    assert cfg.factorize.method == "nmf" and cfg.factorize.n_concepts == 10
    assert cfg.importance.methods == ("sobol", "gradient", "occlusion")
    assert cfg.executor.kind == "local"
    with pytest.raises(ValueError, match="frozen"):
        cfg.factorize.n_concepts = 3  # type: ignore[misc]


def test_yaml_values_and_list_to_tuple(tmp_path):
    cfg = load_config(write(tmp_path, """
out: r
data: {images: imgs, classes: [b, a], max_images: 4}
factorize: {method: semi_nmf, n_concepts: 7, params: {max_iter: 50}}
importance: {methods: [gradient], designs: 8}
executor: {kind: slurm, partition: gpu, gpus_per_task: 1, mem_gb: 8}
"""))
    assert cfg.data.classes == ("b", "a") and cfg.data.max_images == 4
    assert cfg.factorize.method == "semi_nmf" and cfg.factorize.params == {"max_iter": 50}
    assert cfg.importance.methods == ("gradient",)
    assert cfg.executor.mem_gb == 8.0 and isinstance(cfg.executor.mem_gb, float)


@pytest.mark.parametrize(
    "text, must_contain",
    [
        ("factorize: {n_concept: 3}", ["factorize.n_concept", "n_concepts"]),  # unknown key lists allowed keys
        ("bogus: 1", ["unknown key bogus", "factorize"]),
        ("factorize: {n_concepts: ten}", ["factorize.n_concepts", "integer"]),  # wrong type
        ("factorize: {n_concepts: true}", ["factorize.n_concepts", "integer"]),  # bool is not an int
        ("factorize: {n_concepts: 0}", ["factorize.n_concepts", ">= 1"]),  # bad value
        ("factorize: {method: nfm}", ["factorize.method", "nmf | semi_nmf | pca | ica | kmeans | dictionary"]),
        ("extract: {mode: crop}", ["extract.mode", "crops | patches"]),
        ("importance: {methods: [sobol, shap]}", ["importance.methods", "sobol | gradient | occlusion"]),
        ("executor: {kind: kubernetes}", ["executor.kind", "local | slurm"]),
        ("executor: {workers: many}", ["executor.workers", "auto"]),
        ("model: {device: gpu}", ["model.device", "cuda"]),
        ("model: {layout: tokens}", ["factorize.method", "semi_nmf"]),  # nmf on signed tokens
        ("data: 3", ["data", "mapping"]),
        ("export: {formats: [xlsx]}", ["export.formats", "csv | parquet | json"]),
    ],
)
def test_invalid_configs_fail_with_one_line(tmp_path, text, must_contain):
    with pytest.raises(ConceptsError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    for part in must_contain:
        assert part in message, message


def test_cli_exit_code_and_message(tmp_path, capsys):
    from concepts.cli import main

    code = main(["run", str(write(tmp_path, "extract: {mode: crop}")), "--print-config"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "extract.mode" in err[0] and "crops | patches" in err[0]


def test_overrides_set_and_flags(tmp_path, capsys):
    from concepts.cli import main

    path = write(tmp_path, "factorize: {n_concepts: 5}\ndata: {images: x}")
    code = main(["run", str(path), "--print-config", "--concepts", "12", "--set", "importance.designs=16",
                 "--set", "factorize.params.max_iter=99", "--classes", "a,b", "--executor", "slurm",
                 "--partition", "p", "--gpus-per-task", "2", "--workers", "3", "--importance", "sobol,occlusion"])
    assert code == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    cfg = config_from_dict(resolved)  # the printed config round-trips
    assert cfg.factorize.n_concepts == 12 and cfg.importance.designs == 16
    assert cfg.factorize.params == {"max_iter": 99}
    assert cfg.data.classes == ("a", "b") and cfg.data.images == "x"
    assert cfg.executor.kind == "slurm" and cfg.executor.partition == "p" and cfg.executor.gpus_per_task == 2
    assert cfg.executor.workers == 3 and cfg.importance.methods == ("sobol", "occlusion")
    # an override is validated like the file
    with pytest.raises(ConceptsError, match="factorize.n_concepts"):
        load_config(path, ["factorize.n_concepts=-1"])


def test_to_dict_round_trip_and_replace():
    cfg = load_config(None, {"factorize.method": "pca", "data.classes": ["x"]})
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    other = cfg.replace(**{"factorize.n_concepts": 4})
    assert other.factorize.n_concepts == 4 and cfg.factorize.n_concepts == 10
    assert isinstance(other, RunConfig)


@pytest.mark.parametrize("name", ["demo", "imagenette", "resnet50", "vit_b16", "convnext"])
def test_shipped_configs_parse_and_validate(name):
    path = CONFIGS / f"{name}.yaml"
    cfg = load_config(path)
    text = path.read_text()
    assert text.count("#") >= 5, "configs are meant to be commented"
    assert cfg.out and cfg.data.images
    if name == "vit_b16":
        assert cfg.model.layout == "tokens" and cfg.factorize.method == "semi_nmf"
        assert cfg.extract.mode == "patches" and cfg.model.name.startswith("vit_base_patch16")
    if name == "resnet50":
        assert cfg.model.name.startswith("resnet50")
    if name == "convnext":
        assert cfg.model.name.startswith("convnext") and cfg.executor.kind == "slurm"
    if name == "imagenette":
        assert len(cfg.data.classes) == 10 and cfg.model.name is None
    if name == "demo":
        assert cfg.model.name is None and cfg.executor.kind == "local"


def test_imagenette_config_lists_the_shared_classes():
    root = CONFIGS.parent / ".." / "shared" / "data" / "imagenette" / "val50"
    if not root.is_dir():
        pytest.skip(f"shared Imagenette photos not found at {root}")
    cfg = load_config(CONFIGS / "imagenette.yaml")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert sorted(cfg.data.classes) == folders


def test_model_layout_is_checked_against_the_cut():
    from types import SimpleNamespace

    from concepts.extract.stage import _check_model

    model = SimpleNamespace(num_classes=10)
    info = {"model": "m"}
    cpu = SimpleNamespace(type="cpu")
    _check_model(SimpleNamespace(layout="tokens", model=model, device=cpu), info, load_config(None), False)
    _check_model(SimpleNamespace(layout="spatial", model=model, device=cpu), info,
                 load_config(None, {"model.layout": "spatial"}), False)
    with pytest.raises(ConceptsError, match="model.layout: 'spatial' expected but the model's cut gives 'tokens'"):
        _check_model(SimpleNamespace(layout="tokens", model=model, device=cpu), info,
                     load_config(None, {"model.layout": "spatial"}), False)
