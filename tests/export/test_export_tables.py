"""Exports: the table contract, exact round trip through every format, manifest and provenance."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import re

import h5py
import numpy as np
import pytest

from concepts.schema import safe_filename
from concepts.errors import ConceptsError
from concepts.export import COLUMNS, export_run, load_export

REQUIRED = ["class_id", "class_index", "class_name", "concept", "rank", "importance", "importance_raw", "method",
            "n_images", "model", "layer"]


@pytest.fixture(scope="module")
def exported(export_fake_run):
    run, truth = export_fake_run
    return export_run(run, progress=False), run, truth


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "importances.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_importances_csv_has_the_contract_columns_and_one_row_per_concept(exported):
    folder, _, truth = exported
    rows = _rows(folder)
    assert set(REQUIRED) <= set(rows[0])
    assert list(rows[0]) == list(COLUMNS)
    expected = sum(len(t["components"]) * len(t["methods"]) for t in truth.values())
    assert len(rows) == expected
    for class_id, t in truth.items():
        for method, m in t["methods"].items():
            mine = [r for r in rows if r["class_id"] == class_id and r["method"] == method]
            assert sorted(int(r["concept"]) for r in mine) == list(range(len(m["share"])))
            total = sum(float(r["importance"]) for r in mine)
            assert total == pytest.approx(1.0, abs=1e-5)
            top = min(mine, key=lambda r: int(r["rank"]))
            assert int(top["rank"]) == 1 and int(top["concept"]) == int(np.argmax(m["share"]))
            ranks = sorted(int(r["rank"]) for r in mine)
            assert ranks == list(range(1, len(mine) + 1))
            by_rank = sorted(mine, key=lambda r: int(r["rank"]))
            values = [float(r["importance"]) for r in by_rank]
            assert values == sorted(values, reverse=True)
            assert all(int(r["n_images"]) == int((~t["skipped"]).sum()) for r in mine)
            assert all(r["model"] == "fake_model" and r["layer"] == "features" for r in mine)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_reimport_gives_back_exactly_the_run(exported, fmt):
    folder, run, truth = exported
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    back = load_export(run, format=fmt)
    assert back.path == folder
    table = back.importances
    assert table["importance"].dtype == np.float32
    for class_id, t in truth.items():
        stem = safe_filename(class_id)
        with h5py.File(run / "concepts" / f"{stem}.h5", "r") as handle:
            bank = handle["components"][()]
        assert back.banks[class_id].dtype == bank.dtype
        np.testing.assert_array_equal(back.banks[class_id], bank)
        with h5py.File(run / "importance" / f"{stem}.h5", "r") as handle:
            for method in t["methods"]:
                group = handle[method]
                np.testing.assert_array_equal(back.share(class_id, method), group["share"][()])
                mask = (table["class_id"] == class_id) & (table["method"] == method)
                order = np.argsort(table["concept"][mask])
                np.testing.assert_array_equal(table["importance_raw"][mask][order], group["class_importance"][()])
                np.testing.assert_array_equal(table["ci_low"][mask][order], group["ci_low"][()])
                share_ci = group["share_ci_high"][()] if "share_ci_high" in group else np.full(len(order), np.nan)
                np.testing.assert_array_equal(table["share_ci_high"][mask][order], share_ci)
                np.testing.assert_array_equal(back.per_image[class_id][method], group["per_image"][()])
        with h5py.File(run / "activations" / f"{stem}.h5", "r") as handle:
            paths = [p.decode() if isinstance(p, bytes) else p for p in handle["images/path"][()]]
            assert all(not Path(p).is_absolute() for p in back.images[class_id]["path"])  # relative to the root
            assert [str(back.image_path(class_id, i)) for i in range(len(paths))] == paths
            np.testing.assert_array_equal(back.images[class_id]["skipped"], handle["images/skipped"][()])
            np.testing.assert_array_equal(back.images[class_id]["logit"], handle["images/logit"][()])
    names = {c["class_id"]: c["class_name"] for c in back.classes}
    assert names["n99<evil>"].startswith("<script>")  # odd names survive the CSV quoting


def test_manifest_records_config_versions_and_provenance(exported):
    folder, run, truth = exported
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "concepts-export"
    assert manifest["versions"]["concepts"] and manifest["versions"]["numpy"] == np.__version__
    assert {c["class_id"] for c in manifest["classes"]} == set(truth)
    for entry in manifest["classes"]:
        for stage in ("extract", "factorize", "importance"):
            source = entry["inputs"][stage]
            data = (run / source["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == source["sha256"]
        assert entry["inputs"]["extract"]["attrs"]["weights_sha256"] == "0" * 64
        assert entry["inputs"]["extract"]["attrs"]["preprocessing"]["input_size"] == 224
    for name, info in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == info["sha256"]
    assert set(manifest["files"]) >= {"importances.csv", "importances.parquet", "importances.json",
                                      "concept_banks.npz", "per_image_importances.npz", "classes.csv", "images.csv",
                                      "diagnostics.csv", "top_crops.csv", "README.md"}
    readme = (folder / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in COLUMNS)
    for table, columns in manifest["table_columns"].items():
        assert all(f"`{name}`" in readme for name in columns), table
    prose = readme.replace("```", "")
    assert "``" not in prose and ".. " not in prose and ":class:" not in prose  # plain Markdown, no RST
    assert Path(manifest["image_root"]).is_absolute() and Path(manifest["run"]).is_absolute()


def test_manifest_carries_the_run_config(export_fake_run, tmp_path):
    run, _ = export_fake_run
    (run / "config.yaml").write_text("factorize:\n  method: nmf\n  n_concepts: 5\n")
    try:
        folder = export_run(run, ["csv"], out=tmp_path / "ex", progress=False)
    finally:
        (run / "config.yaml").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"] == {"factorize": {"method": "nmf", "n_concepts": 5}}
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "classes.csv", "concept_banks.npz",
                                                        "diagnostics.csv", "images.csv", "importances.csv",
                                                        "manifest.json", "per_image_importances.npz",
                                                        "top_crops.csv"]


def test_a_modified_export_is_refused(export_fake_run, tmp_path):
    run, _ = export_fake_run
    folder = export_run(run, ["csv"], out=tmp_path / "ex", progress=False)
    text = (folder / "importances.csv").read_text().replace(",1,", ",2,", 1)
    (folder / "importances.csv").write_text(text)
    with pytest.raises(ConceptsError, match="sha256"):
        load_export(folder)
    assert load_export(folder, verify=False).importances["rank"].max() >= 2
    with pytest.raises(ConceptsError, match="not an export folder"):
        load_export(tmp_path)


def test_every_format_is_written_and_a_bad_one_refused(export_fake_run, tmp_path):
    """pyarrow is a dependency: Parquet is always written with the default formats (no silent skip)."""
    from importlib import metadata

    run, _ = export_fake_run
    assert any(r.startswith("pyarrow") and "extra" not in r for r in metadata.requires("concepts"))
    folder = export_run(run, out=tmp_path / "ex", progress=False)
    assert all((folder / f"importances.{fmt}").exists() for fmt in ("csv", "parquet", "json"))
    with pytest.raises(ConceptsError, match="export.formats: .*xlsx.* is not allowed; expected .*csv | parquet"):
        export_run(run, ["xlsx"], out=tmp_path / "ex2", progress=False)


def test_cli_export(export_fake_run, tmp_path):
    from concepts.cli import main

    run, _ = export_fake_run
    assert main(["export", str(run), "--format", "json", "--out", str(tmp_path / "ex"), "--quiet",
                 "--classes", "n01440764"]) == 0
    back = load_export(tmp_path / "ex")
    assert set(back.banks) == {"n01440764"}
    assert "importances.json" in back.manifest["files"] and "importances.csv" not in back.manifest["files"]
    assert main(["export", str(run), "--format", "xml", "--quiet"]) == 2


@pytest.mark.parametrize("scope", ["class", "dataset"])
def test_real_run_round_trip(request, tmp_path, scope):
    """The real run (both scopes): export and reload give back the files' arrays exactly."""
    run = request.getfixturevalue("real_run" if scope == "class" else "real_run_dataset")
    for folder in ("activations", "concepts", "importance"):
        if not any((run / folder).glob("*.h5")):
            pytest.skip(f"real_run has no {folder}/ yet (that stage has not landed)")
    folder = export_run(run, out=tmp_path / "ex", progress=False)
    back = load_export(folder)
    for path in sorted((run / "importance").glob("*.h5")):
        with h5py.File(path, "r") as handle:
            class_id = handle.attrs["class_id"]
            class_id = class_id.decode() if isinstance(class_id, bytes) else str(class_id)
            for method in ("sobol", "gradient", "occlusion"):
                if method in handle:
                    np.testing.assert_array_equal(back.share(class_id, method), handle[method]["share"][()])
                    np.testing.assert_array_equal(back.per_image[class_id][method], handle[method]["per_image"][()])
                    assert float(back.share(class_id, method).sum()) == pytest.approx(1.0, abs=1e-4)
        with h5py.File(run / "concepts" / path.name, "r") as handle:
            np.testing.assert_array_equal(back.banks[class_id], handle["components"][()])


def test_a_folder_that_is_not_an_export_is_never_replaced(export_fake_run, tmp_path):
    run, _ = export_fake_run
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    with pytest.raises(ConceptsError, match="not an export folder"):
        export_run(run, ["csv"], out=precious, progress=False)
    assert (precious / "notes.txt").read_text() == "keep"


def test_the_diagnostics_table_holds_the_figures_of_the_atlas_and_info(exported):
    from concepts.evidence import DIAGNOSTIC_COLUMNS, class_diagnostics
    from concepts.schema.classdata import load_class

    folder, run, truth = exported
    back = load_export(folder)
    table = back.diagnostics.set_index("class_id")
    assert list(back.diagnostics.columns) == list(DIAGNOSTIC_COLUMNS)
    for class_id in truth:
        d = class_diagnostics(load_class(run, class_id, with_maps=False, with_coefficients=False))
        row = table.loc[class_id]
        assert row["decomposition"] == d.decomposition == "exact"
        for name in ("logit", "explained_share", "residual_share", "bias_share", "rel_error"):
            assert float(row[name]) == pytest.approx(getattr(d, name), rel=1e-6)
        assert float(row["explained_share"] + row["residual_share"] + row["bias_share"]) == pytest.approx(1, abs=1e-5)
        assert float(row["logit_bias"]) == pytest.approx(0.25, abs=1e-5)  # the bias the fixture planted


def test_the_top_crop_table_lists_the_crops_of_the_atlas(exported):
    from concepts.atlas.analysis import top_rows

    folder, run, truth = exported
    crops = load_export(folder).top_crops
    for class_id, t in truth.items():
        mine = crops[crops.class_id == class_id]
        for k in range(len(t["components"])):
            rows = mine[mine.concept == k].sort_values("rank")
            coef = np.where(t["skipped"][t["row_image"]][:, None], -np.inf, t["coefficients"])
            expected = top_rows(coef, k, 10, t["row_image"])
            assert rows["image_index"].tolist() == [int(t["row_image"][r]) for r in expected]
            np.testing.assert_allclose(rows["coefficient"], t["coefficients"][expected, k], rtol=1e-6)
            assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        known = mine[mine.x1 > 0]
        assert ((known.x1 > known.x0) & (known.y1 > known.y0)).all()


def test_the_exports_alone_rebuild_the_craft_crop_figure(request, tmp_path):
    """From top_crops.csv, importances.csv and the photos under image_root only: each concept's row of crops, in
    the importance order, is the atlas's crops (the same photo regions, up to WebP compression)."""
    import pandas as pd
    from PIL import Image

    run = request.getfixturevalue("real_run")
    if not any((run / "importance").glob("*.h5")):
        pytest.skip("real_run has no importance/ yet")
    from concepts.atlas import build_atlas
    from concepts.atlas.packed import read_data_script  # a concept page's content (static/conceptpage.js draws it)

    folder = export_run(run, out=tmp_path / "exports", progress=False)
    site = build_atlas(run, out=tmp_path / "atlas", progress=False).parent
    manifest = json.loads((folder / "manifest.json").read_text())
    root = Path(manifest["image_root"])
    crops = pd.read_csv(folder / "top_crops.csv", dtype={"class_id": str, "stem": str, "path": str})
    ranks = pd.read_csv(folder / "importances.csv", dtype={"class_id": str, "stem": str})
    stem = sorted(crops.stem.unique())[0]
    order = ranks[(ranks.stem == stem) & (ranks.method == "sobol")].sort_values("rank")["concept"].tolist()
    tile, rows = 64, []
    for concept in order:
        strip = []
        for crop in crops[(crops.stem == stem) & (crops.concept == concept)].sort_values("rank").itertuples():
            data = (root / crop.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == crop.sha256  # the photo the run was made from
            with Image.open(root / crop.path) as photo:
                strip.append(np.asarray(photo.convert("RGB").crop((crop.x0, crop.y0, crop.x1, crop.y1))
                                        .resize((tile, tile), Image.LANCZOS), np.float32))
        rows.append(np.concatenate(strip, axis=1))
        # the atlas's crops of the same concept, in the same order
        page = read_data_script((site / "classes" / stem / "concepts.js").read_text(), "ATLAS_CONCEPTS")[str(concept)]
        files = re.findall(r'src="\.\./\.\./(img/[^"]+/r\d+\.webp)"', page)
        assert len(files) == len(strip)
        for mine, name in zip(strip, files):
            with Image.open(site / name) as shown:
                theirs = np.asarray(shown.convert("RGB").resize((tile, tile), Image.LANCZOS), np.float32)
            assert np.abs(mine - theirs).mean() < 10.0
    figure = np.concatenate([np.pad(r, ((2, 2), (0, rows[0].shape[1] - r.shape[1]), (0, 0)), constant_values=255)
                             for r in rows], axis=0)
    out = Path(__file__).resolve().parents[2] / "test-artifacts" / "export"
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(figure.astype(np.uint8)).save(out / f"craft-crops-{stem}.png")
    assert figure.shape[0] == len(order) * (tile + 4)
