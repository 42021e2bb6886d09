"""The site-wide pages of the atlas: the shared dictionary of a dataset-scope run (issue 12) and the layer switcher
of a several-layer run (issue 15), read back from the HTML and checked against the run's files and exports."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from atlas_html import parse
from concepts.atlas import build_atlas
from concepts.errors import ConceptsError
from concepts.evidence import top_crops
from concepts.schema import RunFolder
from concepts.schema.classdata import load_class

LAYER = "blocks.5"


def _views(run: Path) -> dict[str, dict]:
    """class id -> its view of the shared dictionary, read from its concepts file."""
    folder = RunFolder(run)
    out = {}
    for class_id in folder.classes("factorize"):
        record = folder.concepts(class_id, coefficients=False)
        out[class_id] = {"atoms": np.asarray(record.state["atoms"]), "mass": np.asarray(record.state["mass"]),
                         "name": record.attrs.get("class_name") or class_id}
    return out


def _listings(site: Path) -> list[Path]:
    return sorted((site / "dictionary").glob("index*.html"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 1))


def _check_links(site: Path, pages: list[Path]) -> int:
    """Every href/src of ``pages`` is relative, inside ``site`` and exists; returns how many were checked."""
    checked = 0
    for page_path in pages:
        for el in parse(page_path).iter():
            for attr in ("src", "href"):
                ref = el.attrs.get(attr)
                if ref is None:
                    continue
                parts = urlsplit(ref)
                assert not parts.scheme and not ref.startswith("/"), f"{page_path}: {ref}"
                target = page_path if not parts.path else (page_path.parent / unquote(parts.path)).resolve()
                assert target.is_file(), f"{page_path}: {attr}={ref} does not exist"
                assert site.resolve() in target.parents, f"{page_path}: {ref} leaves the site"
                checked += 1
    return checked


# ----------------------------------------------------------------------------------------- shared dictionary
def test_the_dictionary_index_lists_every_atom_once_by_mass(dataset_atlas, real_run_dataset):
    views = _views(real_run_dataset)
    n_atoms = len(next(iter(views.values()))["mass"])
    mass = np.sum([v["mass"] for v in views.values()], axis=0)
    listed, sizes = [], []
    for listing in _listings(dataset_atlas):
        rows = parse(listing).find_all("tr", cls="atom-row")
        sizes.append(len(rows))
        for row in rows:
            atom = int(row.attrs["data-atom"])
            listed.append(atom)
            assert float(row.attrs["data-mass"]) == pytest.approx(mass[atom], rel=1e-5)
            assert int(row.attrs["data-users"]) == sum(v["mass"][atom] > 0 for v in views.values())
            concept_of = {a.attrs["data-class"] for a in row.find("td", cls="concept-of").find_all("a")}
            assert concept_of == {c for c, v in views.items() if atom in v["atoms"]}
            assert int(row.attrs["data-concepts"]) == len(concept_of)
    assert sorted(listed) == list(range(n_atoms)) and n_atoms == 12
    assert sizes == [5, 5, 2]  # atoms_per_page=5
    assert list(mass[listed]) == sorted(mass, reverse=True)  # most used first
    assert (dataset_atlas / "dictionary" / "a11.html").is_file()
    assert not (dataset_atlas / "dictionary" / "a12.html").exists()


def test_each_atom_page_gives_its_classes_and_importances_as_the_files_and_exports(dataset_atlas, real_run_dataset,
                                                                                   tmp_path):
    import pandas as pd

    from concepts.export import export_run

    exports = export_run(real_run_dataset, out=tmp_path / "exports", formats=("csv",), progress=False)
    table = pd.read_csv(exports / "importances.csv", dtype={"class_id": str, "stem": str})
    table = table[table.depth == 0]
    views = _views(real_run_dataset)
    mass = np.stack([v["mass"] for v in views.values()])
    ids = list(views)
    n_rows = 0
    for atom in range(mass.shape[1]):
        page = parse(dataset_atlas / "dictionary" / f"a{atom}.html")
        assert f"Atom {atom} " in page.find("h1").text
        # the classes that use it, with their share of its mass
        users = page.find_all("table", cls="atom-users")
        shown = {tr.attrs["data-class"]: float(tr.attrs["data-share"]) for t in users for tr in t.find_all("tr")
                 if "data-class" in tr.attrs}
        expected = {ids[c]: mass[c, atom] / mass[:, atom].sum() for c in range(len(ids)) if mass[c, atom] > 0}
        assert shown.keys() == expected.keys()
        for class_id, share in shown.items():
            assert share == pytest.approx(expected[class_id], rel=1e-5)
        # its importance in each class that has it among its concepts
        rows = [tr for t in page.find_all("table", cls="atom-importance") for tr in t.find_all("tr")
                if "data-class" in tr.attrs]
        having = {c: int(np.flatnonzero(v["atoms"] == atom)[0]) for c, v in views.items() if atom in v["atoms"]}
        assert {tr.attrs["data-class"]: int(tr.attrs["data-concept"]) for tr in rows} == having
        for tr in rows:
            for cell in [td for td in tr.find_all("td") if td.attrs.get("data-method")]:
                method = cell.attrs["data-method"]
                row = table[(table.class_id == tr.attrs["data-class"]) & (table.method == method)
                            & (table.concept == int(tr.attrs["data-concept"]))]
                assert len(row) == 1, (atom, tr.attrs, method)
                assert float(cell.attrs["data-raw"]) == pytest.approx(float(row.importance_raw.iloc[0]), rel=1e-4,
                                                                     abs=1e-7)
                assert int(cell.attrs["data-rank"]) == int(row["rank"].iloc[0])
                n_rows += 1
    assert n_rows == 2 * 6 * 3  # every concept of both classes, by each of the three methods


def test_atom_crops_are_the_classes_top_crops_merged_by_coefficient(dataset_atlas, real_run_dataset):
    views = _views(real_run_dataset)
    per_class = {c: top_crops(load_class(real_run_dataset, c, with_maps=False), 4) for c in views}
    for atom in range(12):
        page = parse(dataset_atlas / "dictionary" / f"a{atom}.html")
        shown = [(fig.attrs["data-class"], float(fig.attrs["data-coefficient"]))
                 for fig in page.find_all("figure", cls="crop")]
        pool = sorted(((crop.coefficient, c) for c, v in views.items() if atom in v["atoms"]
                       for crop in per_class[c][int(np.flatnonzero(v["atoms"] == atom)[0])]), key=lambda t: -t[0])
        assert len(shown) == min(4, len(pool))
        assert [c for c, _ in shown] == [c for _, c in pool[:4]]
        np.testing.assert_allclose([v for _, v in shown], [v for v, _ in pool[:4]], rtol=1e-5)
        for img in page.find_all("img", cls="photo"):
            assert (dataset_atlas / "dictionary" / img.attrs["src"]).resolve().is_file()


def test_every_concept_card_names_and_links_its_atom(dataset_atlas, real_run_dataset):
    from concepts.schema import safe_filename

    views = _views(real_run_dataset)
    for class_id, view in views.items():
        page = parse(dataset_atlas / "classes" / f"{safe_filename(class_id)}.html")
        cards = page.find_all("article", cls="concept-card")
        assert len(cards) == len(view["atoms"]) == 6
        for card in cards:
            concept = int(card.attrs["data-concept"])
            link = card.find("a", cls="atom-link")
            atom = int(view["atoms"][concept])
            assert int(link.attrs["data-atom"]) == atom and f"atom {atom}" in link.text
            assert link.attrs["href"] == f"../dictionary/a{atom}.html"
            target = parse(dataset_atlas / "dictionary" / f"a{atom}.html")
            assert any(tr.attrs.get("data-class") == class_id and tr.attrs.get("data-concept") == str(concept)
                       for tr in target.find_all("tr"))
        concept_page = parse(dataset_atlas / "classes" / safe_filename(class_id) / "c0.html")
        assert concept_page.find("a", cls="atom-link").attrs["href"] == f"../../dictionary/a{view['atoms'][0]}.html"
    pages = sorted(dataset_atlas.rglob("*.html"))
    assert all(parse(p).find_all("a", cls="dictionary-link") for p in pages)  # site-wide navigation
    assert _check_links(dataset_atlas, [p for p in pages if "dictionary" in p.parts or p.name == "index.html"]) > 100


def test_a_class_scope_atlas_has_no_dictionary(fake_atlas):
    assert not (fake_atlas / "dictionary").exists() and not (fake_atlas / "layers").exists()
    for page_path in [fake_atlas / "index.html", *sorted((fake_atlas / "classes").glob("*.html"))]:
        page = parse(page_path)
        assert not page.find_all("a", cls="dictionary-link") and not page.find_all("a", cls="atom-link")
        assert not page.find_all("nav", cls="layers")


# ----------------------------------------------------------------------------------------- several layers
def _switch(page_path: Path) -> dict[str, str | None]:
    """layer -> the href of its switcher entry (None for the current layer)."""
    nav = parse(page_path).find("nav", cls="layers")
    out = {}
    for el in nav.iter():
        if "layer" in el.attrs.get("class", "").split():
            out[el.text] = None if "current" in el.attrs["class"].split() else el.attrs["href"]
    return out


def test_a_several_layer_atlas_covers_every_layer_with_a_switcher_to_the_same_class(layers_atlas, real_run_layers):
    from concepts.schema import safe_filename

    sub = layers_atlas / "layers" / safe_filename(LAYER)
    assert (layers_atlas / "index.html").is_file() and (sub / "index.html").is_file()
    classes = RunFolder(real_run_layers).classes("importance")
    for class_id in classes:
        stem = safe_filename(class_id)
        main_page, sub_page = layers_atlas / "classes" / f"{stem}.html", sub / "classes" / f"{stem}.html"
        assert "layer <code>features</code>" in main_page.read_text()
        assert f"layer <code>{LAYER}</code>" in sub_page.read_text()
        assert _switch(main_page) == {"features": None, LAYER: f"../layers/{stem_of(LAYER)}/classes/{stem}.html"}
        assert _switch(sub_page) == {"features": f"../../../classes/{stem}.html", LAYER: None}
        # a concept or image page switches to the class page of the other layer (its concepts are others)
        for page_path in sorted((layers_atlas / "classes" / stem).glob("*.html"))[:3]:
            target = (page_path.parent / _switch(page_path)[LAYER]).resolve()
            assert target == sub_page.resolve()
        for page_path in sorted((sub / "classes" / stem).glob("*.html"))[:3]:
            assert (page_path.parent / _switch(page_path)["features"]).resolve() == main_page.resolve()
    assert _switch(layers_atlas / "index.html") == {"features": None, LAYER: f"layers/{stem_of(LAYER)}/index.html"}
    # each layer's pages are its own: concepts of blocks.5 are Semi-NMF concepts of its own activations
    assert "(semi_nmf)" in (sub / "classes" / f"{safe_filename(classes[0])}.html").read_text()
    assert _check_links(layers_atlas, sorted(layers_atlas.rglob("*.html"))) > 300


def stem_of(layer: str) -> str:
    from concepts.schema import safe_filename

    return safe_filename(layer)


def test_the_layer_flag_chooses_the_layers(real_run_layers, tmp_path, capsys):
    from concepts.cli import main

    assert main(["atlas", str(real_run_layers), "--out", str(tmp_path / "one"), "--layer", LAYER, "--no-alignment",
                 "--top-k", "2", "-q"]) == 0
    one = tmp_path / "one"
    assert not (one / "layers").exists() and not parse(one / "index.html").find_all("nav", cls="layers")
    assert f"layer <code>{LAYER}</code>" in (one / "index.html").read_text()
    assert main(["atlas", str(real_run_layers), "--out", str(tmp_path / "x"), "--layer", "blocks.2", "-q"]) == 2
    assert "no layer 'blocks.2' cached" in capsys.readouterr().err
    with pytest.raises(ConceptsError, match="no layer 'blocks.2' cached"):
        build_atlas(real_run_layers, out=tmp_path / "y", layer=["blocks.2"], progress=False)


def test_a_layer_without_importance_is_left_out_unless_asked_for(real_run_layers, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(real_run_layers, run, ignore=shutil.ignore_patterns("atlas"))
    shutil.rmtree(run / "layers" / stem_of(LAYER) / "importance")
    site = build_atlas(run, top_k=2, alignment=False, progress=False).parent
    assert not (site / "layers").exists() and not parse(site / "index.html").find_all("nav", cls="layers")
    site = build_atlas(run, out=tmp_path / "both", layer=["features", LAYER], top_k=2, alignment=False,
                       progress=False).parent
    assert (site / "layers" / stem_of(LAYER) / "index.html").is_file()  # asked for: ranked by coefficient mass
    assert set(_switch(site / "index.html")) == {"features", LAYER}


def test_sheets_of_one_layer_go_where_its_atlas_pages_go(real_run_layers, tmp_path, capsys):
    from concepts.cli import main

    run = tmp_path / "run"
    shutil.copytree(real_run_layers, run, ignore=shutil.ignore_patterns("atlas"))
    assert main(["atlas", str(run), "--sheets-only", "--layer", LAYER, "--top-k", "2", "-q"]) == 0
    stems = sorted(p.stem for p in (run / "layers" / stem_of(LAYER) / "concepts").glob("*.h5"))
    assert sorted(p.stem for p in (run / "atlas" / "layers" / stem_of(LAYER) / "sheets").glob("*.png")) == stems
    assert not (run / "atlas" / "sheets").exists()
    assert main(["atlas", str(run), "--sheets-only", "--layer", LAYER, "--layer", "features", "-q"]) == 2
    assert "one layer at a time" in capsys.readouterr().err


def test_the_switcher_targets_the_same_class_the_dictionary_or_the_index(tmp_path):
    from concepts.atlas.layers import LayerSite, LayerSwitch

    folders = {}
    for name in ("a", "b"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
    (folders["b"] / "dictionary").mkdir()
    (folders["b"] / "dictionary" / "shared.h5").write_bytes(b"")
    sites = [LayerSite("a", folders["a"], [("x", "x"), ("y", "y")]),
             LayerSite("b", folders["b"], [("x", "x")], prefix="layers/b/")]
    assert sites[1].dictionary and not sites[0].dictionary
    at_a, at_b = LayerSwitch(sites, 0), LayerSwitch(sites, 1)
    links = {here: {link["name"]: link["href"] for link in at_a.links(here)} for here in
             ("index.html", "classes/x.html", "classes/x/c3.html", "classes/x/i0.html", "classes/y.html",
              "classes/y/c0.html")}
    assert links == {"index.html": {"a": "index.html", "b": "layers/b/index.html"},
                     "classes/x.html": {"a": "x.html", "b": "../layers/b/classes/x.html"},
                     "classes/x/c3.html": {"a": "c3.html", "b": "../../layers/b/classes/x.html"},
                     "classes/x/i0.html": {"a": "i0.html", "b": "../../layers/b/classes/x.html"},
                     "classes/y.html": {"a": "y.html", "b": "../layers/b/index.html"},  # b lacks the class
                     "classes/y/c0.html": {"a": "c0.html", "b": "../../layers/b/index.html"}}
    back = {link["name"]: link["href"] for link in at_b.links("dictionary/a7.html")}
    assert back == {"a": "../../../index.html", "b": "a7.html"}  # a has no dictionary: its index
    assert {link["name"]: link["href"] for link in at_a.links("index.html")}["b"] == "layers/b/index.html"
    assert LayerSwitch(sites[:1], 0).links("classes/x.html") == []  # one layer: no switcher
    assert sites[1].target("dictionary/index-2.html") == "dictionary/index.html"


def test_atom_pages_of_a_fabricated_dictionary(tmp_path):
    """The dictionary's views and pages alone (what the site build gathers, fabricated): atoms no class has as a
    concept, a dead atom, ties in mass, and a concept's feature visualisation shown on its atom's page."""
    from types import SimpleNamespace

    from concepts.atlas.dictionary import DictionaryPages
    from concepts.atlas.render import Pages
    from concepts.atlas.views import CropView, Value, Visualisation
    from concepts.settings import AtlasSettings

    pages = DictionaryPages({"n_concepts": 5, "method": "topk_sae"})
    masses = {"a": np.array([3.0, 1.0, 0.0, 2.0, 0.0]), "b": np.array([1.0, 0.0, 0.0, 2.0, 5.0])}
    atoms = {"a": np.array([0, 3]), "b": np.array([4, 3])}
    for name in ("a", "b"):
        concepts = []
        for j, atom in enumerate(atoms[name]):
            crops = [CropView(image=i, rank=i + 1, coefficient=float(10 * atom + i + (name == "b")),
                              image_name=f"{name}{i}.jpg", url=f"img/{name}/r{i}.webp",
                              page=f"classes/{name}/image.html?i={i}", width=112, height=112) for i in range(2)]
            concepts.append(SimpleNamespace(
                index=j, page=f"classes/{name}/c{j}.html", crops=crops,
                values={"gradient": Value(0.1 * (j + 1), np.nan, np.nan, 0.5 * (j + 1), j + 1)},
                visualisation=Visualisation(f"img/atoms/a{atom}.webp", None, "MACO image") if name == "a" else None))
        pages.add(SimpleNamespace(class_name=f"class {name}", class_id=name, page=f"classes/{name}.html",
                                  methods={"gradient": SimpleNamespace(label="gradient x input")}, concepts=concepts),
                  atoms[name], masses[name])
    view = pages.view(per_page=2, top_k=3)
    assert [a.index for a in view.atoms] == [4, 0, 3, 1, 2]  # by mass (5, 4, 4, 1, 0; a tie by index)
    by_index = {a.index: a for a in view.atoms}
    assert [a.index for a in view.atoms] == sorted(by_index, key=lambda k: (-(masses["a"][k] + masses["b"][k]), k))
    assert [u.class_id for u in by_index[3].top] == ["a", "b"] and by_index[3].top[0].share == pytest.approx(0.5)
    assert by_index[0].top[0].share == pytest.approx(0.75) and by_index[0].top[0].rank == 1
    assert by_index[1].concepts == [] and by_index[1].crops == [] and by_index[1].n_users == 1
    assert by_index[2].n_users == 0 and by_index[2].top == []
    assert [(c.class_id, c.crop.coefficient) for c in by_index[3].crops] == [("b", 32.0), ("a", 31.0), ("b", 31.0)]
    assert by_index[3].visualisation.image == "img/atoms/a3.webp" and by_index[4].visualisation is None
    assert [url for url, _ in view.listings] == ["dictionary/index.html", "dictionary/index-2.html",
                                                 "dictionary/index-3.html"]
    Pages(tmp_path, AtlasSettings(), "concept atlas").dictionary(view)
    html = (tmp_path / "dictionary" / "a3.html").read_text()
    assert 'src="../img/atoms/a3.webp"' in html and "MACO image" in html
    assert "No class of this atlas uses this atom" in (tmp_path / "dictionary" / "a2.html").read_text()
    assert "no crop is cached for it" in (tmp_path / "dictionary" / "a1.html").read_text()
    assert sorted(p.name for p in (tmp_path / "dictionary").glob("*.html")) == \
        ["a0.html", "a1.html", "a2.html", "a3.html", "a4.html", "index-2.html", "index-3.html", "index.html"]
