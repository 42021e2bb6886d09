"""What the later stages add to the concept cards and the concept page, on small real runs (a random-weight timm
``test_resnet`` on Imagenette photos, every stage run by the command line): the MACO feature visualisations
(``concepts fviz``, a few steps), concept names (a manual ``RUN/labels.csv``), sub-concepts (``factorize
--recursive``), and a run without a class score (``--head none``: prevalence, no importance claim). Browser tests
at desktop width and 390 px (Debian's chromium through Playwright, skipped without it); screenshots go to
test-artifacts/atlas/.
"""
from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from atlas_html import image_data, rendered_html
from concepts.evidence.numbers import pct
from test_atlas_browser import _check_images, _page, _shot

CLASSES = ["n01440764", "n03000684"]  # tench, chain saw
TENCH = CLASSES[0]
LABELS = {(TENCH, 0): "green water", (TENCH, 2): "fish scales", (CLASSES[1], 1): "orange blade"}
EXTRACT = ["--model", "test_resnet", "--random-init", "--classes", ",".join(CLASSES), "--max-images", "6",
           "--mode", "crops", "--workers", "0", "--threads", "1", "-q"]
FVIZ = ["--steps", "4", "--crops", "2", "--image-size", "64", "--threads", "1", "-q"]


def _cli(*args) -> None:
    from concepts.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([str(a) for a in args]) == 0, args


def _atlas(run: Path) -> Path:
    from concepts.atlas import build_atlas

    return build_atlas(run, top_k=6, progress=False).parent


@pytest.fixture(scope="module")
def cards_run(tmp_path_factory, val50) -> Path:
    """Every stage on 2 classes x 6 photos: 4 concepts per class, each split into 2 sub-concepts, importance,
    fviz, and manual names for three concepts."""
    run = tmp_path_factory.mktemp("cards") / "run"
    _cli("extract", val50, "--out", run, *EXTRACT)
    _cli("factorize", run, "--method", "nmf", "--concepts", 4, "--recursive", "--sub-concepts", 2,
         "--threshold-percentile", 50, "--threads", 1, "-q")
    _cli("importance", run, "--threads", 1, "-q")
    _cli("fviz", run, *FVIZ)
    lines = ["class,concept,label"] + [f"{c},{k},{label}" for (c, k), label in LABELS.items()]
    (run / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def cards_atlas(cards_run) -> Path:
    return _atlas(cards_run)


@pytest.fixture(scope="module")
def none_atlas(tmp_path_factory, val50) -> Path:
    """``--head none``: no class score; importance is prevalence (fviz runs, without a logit image)."""
    run = tmp_path_factory.mktemp("cards_none") / "run"
    _cli("extract", val50, "--out", run, *EXTRACT, "--head", "none")
    _cli("factorize", run, "--method", "nmf", "--concepts", 4, "--threads", 1, "-q")
    _cli("importance", run, "--threads", 1, "-q")
    _cli("fviz", run, *FVIZ)
    return _atlas(run)



def _decoded(site: Path, where, selector: str) -> list[np.ndarray]:
    """The pictures of the images ``selector`` under ``where`` (a page or a locator), read from the site."""
    from PIL import Image

    out = []
    for src in where.locator(selector).evaluate_all("els => els.map(e => e.getAttribute('src'))"):
        with Image.open(site / re.sub(r"^(\.\./)+", "", src)) as handle:
            out.append(np.asarray(handle.convert("RGB"), np.float64))
    return out


# ---- feature visualisations ----------------------------------------------------------------------------------
@pytest.mark.browser
def test_each_concept_card_shows_its_own_visualisation_and_the_toggle_works(page, cards_atlas, cards_run):
    from concepts.schema import open_run

    record = open_run(cards_run).fviz(TENCH)
    images = record.concept_images().astype(np.float64)
    page.goto((cards_atlas / "classes" / f"{TENCH}.html").as_uri())
    cards = page.locator("#concept-cards .concept-card")
    assert cards.count() == record.n_concepts == 4
    assert _check_images(page) > 0  # none broken, the hidden transparency images included
    for i in range(cards.count()):
        card = cards.nth(i)
        k = int(card.get_attribute("data-concept"))
        assert card.locator(".card-body > .visualisation img.plain").count() == 1
        assert card.locator(".card-body > .visualisation img.seen").count() == 1
        shown = _decoded(cards_atlas, card, ".card-body > .visualisation img.plain")[0]
        # the picture of card k is the image fviz made for concept k (WebP is lossy: the nearest, not equal)
        distances = [np.abs(shown - image).mean() for image in images]
        assert int(np.argmin(distances)) == k and distances[k] < 12, (k, distances)
    # the toggle: plain images by default, the transparency views once checked, and back
    plain = page.locator("#concept-cards .card-body > .visualisation img.plain")
    seen = page.locator("#concept-cards .card-body > .visualisation img.seen")
    assert plain.first.is_visible() and not seen.first.is_visible()
    page.check("#fviz-alpha")
    assert seen.first.is_visible() and not plain.first.is_visible()
    assert all(seen.nth(i).is_visible() for i in range(seen.count()))
    from PIL import Image

    src = seen.first.get_attribute("src")
    with Image.open(cards_atlas / re.sub(r"^(\.\./)+", "", src)) as handle:
        assert handle.mode == "RGBA"
        alpha = np.asarray(handle)[..., 3]
    assert alpha.max() == 255 and alpha.min() < 128  # a real map: opaque where MACO looked, see-through elsewhere
    page.uncheck("#fviz-alpha")
    assert plain.first.is_visible() and not seen.first.is_visible()
    # the class logit's image on the class page
    logit = page.locator("#logit-visualisation img.plain")
    assert logit.count() == 1 and logit.is_visible()
    _shot(page, "cards-fviz-class.png")
    page.goto((cards_atlas / "classes" / TENCH / "c1.html").as_uri())
    big = page.locator("#visualisation img.plain")
    assert big.count() == 1 and big.is_visible()
    page.check("#fviz-alpha")
    assert page.locator("#visualisation img.seen").is_visible()
    _shot(page, "cards-fviz-concept.png")


def test_visualisation_files_are_written_once_per_concept(cards_atlas, cards_run):
    from PIL import Image

    from concepts.schema import open_run

    with Image.open(cards_atlas / "img" / TENCH / "fviz_c0.webp") as handle:
        assert handle.size == (64, 64)  # fviz's own size (never upscaled)
    for stem in CLASSES:
        files = sorted(p.name for p in (cards_atlas / "img" / stem).glob("fviz_*"))
        tree = open_run(cards_run).concept_tree(stem)
        nodes = [n.node for n in tree.nodes[tree.n_concepts:]]
        assert len(nodes) == 8  # 4 concepts x 2 sub-concepts, each with its image
        assert files == sorted([f"fviz_c{k}.webp" for k in range(4)] + [f"fviz_c{k}_alpha.webp" for k in range(4)]
                               + [f"fviz_s{n}.webp" for n in nodes] + [f"fviz_s{n}_alpha.webp" for n in nodes]
                               + ["fviz_logit.webp", "fviz_logit_alpha.webp"])


def test_large_visualisations_are_written_at_twice_the_displayed_size(tmp_path):
    from PIL import Image

    from concepts.atlas.visualisations import MAX_SIDE, VisualisationWriter

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:512, :512]
    alpha = np.clip(1 - np.hypot(x - 256, y - 256) / 256, 0, 1).astype(np.float32)  # a smooth map, peak at the centre
    urls = VisualisationWriter(tmp_path).write("img/x", "c0", rng.integers(0, 255, (512, 512, 3), np.uint8), alpha)
    assert urls == ("img/x/c0.webp", "img/x/c0_alpha.webp")
    with Image.open(tmp_path / urls[0]) as plain, Image.open(tmp_path / urls[1]) as seen:
        assert plain.size == seen.size == (MAX_SIDE, MAX_SIDE) == (448, 448) and seen.mode == "RGBA"
        a = np.asarray(seen)[..., 3]
    assert a[224, 224] > 200 and a[20, 20] < 30  # opaque where the map is, see-through elsewhere


def test_stale_visualisations_are_not_shown(cards_run, tmp_path):
    """Concepts recomputed after fviz: the old images would show other concepts; the page says why instead."""
    run = tmp_path / "run"
    shutil.copytree(cards_run, run, ignore=shutil.ignore_patterns("atlas", "importance"))
    _cli("factorize", run, "--method", "nmf", "--concepts", 4, "--seed", 1, "--overwrite", "--threads", 1, "-q")
    site = _atlas(run)
    html = (site / "classes" / f"{TENCH}.html").read_text(encoding="utf-8")
    assert "made from earlier concepts" in html and 'class="visualisation' not in html
    assert not list((site / "img" / TENCH).glob("fviz_*"))


def test_dataset_scope_writes_one_image_per_atom(cards_run, tmp_path):
    from concepts.schema import open_run

    run = tmp_path / "run"
    shutil.copytree(cards_run / "activations", run / "activations")
    _cli("factorize", run, "--scope", "dataset", "--method", "nmf", "--concepts", 6, "--threads", 1, "-q")
    _cli("fviz", run, *FVIZ)
    site = _atlas(run)
    folder = open_run(run)
    used: dict[int, set[str]] = {}
    for stem in CLASSES:
        atoms = folder.concepts(stem, coefficients=False).state["atoms"]
        html = (site / "classes" / f"{stem}.html").read_text(encoding="utf-8")
        for k, atom in enumerate(atoms):
            card = html[html.index(f'id="c{k}"'):]
            card = card[:card.index("</article>")]
            assert f"img/atoms/a{int(atom)}.webp" in card, (stem, k, atom)
            assert "shared atom, made with" in card  # the caption says whose photos and rows it was measured on
            used.setdefault(int(atom), set()).add(stem)
        assert not list((site / "img" / stem).glob("fviz_c*"))  # no per-class copy of an atom
    written = sorted(p.name for p in (site / "img" / "atoms").iterdir())
    assert written == sorted([f"a{a}.webp" for a in used] + [f"a{a}_alpha.webp" for a in used])


# ---- concept names ---------------------------------------------------------------------------------------------
@pytest.mark.browser
def test_labels_on_cards_and_the_label_filter_kept_in_the_url(page, cards_atlas):
    url = (cards_atlas / "classes" / f"{TENCH}.html").as_uri()
    page.goto(url)
    card = page.locator("#c0")
    assert card.locator(".concept-label q").inner_text() == "green water"
    assert card.locator(".label-source").inner_text() == "manual"
    assert page.locator("#c1 .concept-label").count() == 0  # no name: none shown, none invented
    page.fill("#label-filter", "fish")
    visible = page.locator("#concept-cards .concept-card:visible")
    assert visible.count() == 1 and visible.get_attribute("data-concept") == "2"
    assert page.locator("#label-count").inner_text() == "1 shown"
    assert "label=fish" in page.url
    saved = page.url
    page.goto("about:blank")
    page.goto(saved)
    assert page.input_value("#label-filter") == "fish"
    assert page.locator("#concept-cards .concept-card:visible").count() == 1
    page.fill("#label-filter", "")
    assert page.locator("#concept-cards .concept-card:visible").count() == 4 and "label=" not in page.url
    page.goto(url + "#c2")  # a plain anchor is not a filter
    assert page.locator("#concept-cards .concept-card:visible").count() == 4
    page.goto(url + "#label=zzz")
    assert page.locator("#concept-cards .concept-card:visible").count() == 0
    page.goto((cards_atlas / "classes" / TENCH / "c2.html").as_uri())
    assert "fish scales" in page.locator("h1.concept-title").inner_text()
    assert "manual" in page.locator(".label-line").inner_text()
    _shot(page, "cards-label-concept.png")


def test_vocabulary_names_show_their_score_and_a_manual_name_wins(cards_run, tmp_path):
    """``concepts label`` words (source vocabulary, with score and the best words) for the concepts they named;
    labels.csv overrides; a vocabulary made for earlier concepts of the class is ignored."""
    from concepts.atlas.classpage import ClassContext, build_class_view, read_run_labels
    from concepts.atlas.pictures import PhotoStore
    from concepts.atlas.render import Pages
    from concepts.atlas.runindex import RunIndex
    from concepts.schema.classdata import list_run_classes, load_class
    from concepts.schema.hdf5 import identity
    from concepts.schema.labels import write_vocabulary_labels
    from concepts.settings import AtlasSettings

    run = tmp_path / "run"
    shutil.copytree(cards_run, run, ignore=shutil.ignore_patterns("atlas"))
    data = load_class(run, TENCH)
    rows = [{"class_id": TENCH, "concept": k, "rank": rank + 1, "word": word, "score": score}
            for k in range(4) for rank, (word, score) in enumerate([(f"word{k}", 0.3 - 0.01 * k), ("other", 0.1)])]
    write_vocabulary_labels(run, rows, {"classes": {TENCH: identity(data.concept_attrs), CLASSES[1]: "old"}})
    found = list_run_classes(run)
    settings = AtlasSettings()
    view = build_class_view(data, ClassContext(RunIndex(run, found, 3), 0, settings, PhotoStore(run, data, None),
                                               write=False, labels=read_run_labels(run)))
    labels = {c.index: c.label for c in view.concepts}
    assert labels[0].label == "green water" and labels[0].source == "manual"  # labels.csv wins
    assert labels[1].label == "word1" and labels[1].source == "vocabulary" and labels[1].score == pytest.approx(0.29)
    assert view.labelled
    Pages(tmp_path / "site", settings, "atlas").class_pages(view)
    card = (tmp_path / "site" / view.page).read_text(encoding="utf-8")
    card = card[card.index('id="c1"'):]
    assert "word1" in card[:card.index("</header>")] and "vocabulary, score 0.29" in card
    concept = rendered_html(tmp_path / "site" / view.by_index[1].page)
    assert "word1 (0.29), other (0.10)" in concept
    other = load_class(run, CLASSES[1])  # its vocabulary named other concepts: only its manual name shows
    view = build_class_view(other, ClassContext(RunIndex(run, found, 3), 1, settings, PhotoStore(run, other, None),
                                                write=False, labels=read_run_labels(run)))
    assert {c.index: c.label.label for c in view.concepts if c.label} == {1: "orange blade"}


# ---- sub-concepts ----------------------------------------------------------------------------------------------
@pytest.mark.browser
def test_a_card_expands_to_its_subconcepts_with_their_crops_and_shares(page, cards_atlas, cards_run):
    from concepts.schema import open_run

    tree = open_run(cards_run).concept_tree(TENCH)
    page.goto((cards_atlas / "classes" / f"{TENCH}.html").as_uri())
    method = page.input_value("#method")
    for k in range(tree.n_concepts):
        children = tree.children(k)
        details = page.locator(f"#c{k} details.subconcepts")
        assert details.count() == 1 and len(children) == 2
        items = details.locator("li.subconcept")
        assert not items.first.is_visible()  # closed until the reader expands it
        details.locator("summary").click()
        assert items.count() == len(children) and items.first.is_visible()
        for child, item in zip(children, [items.nth(i) for i in range(items.count())]):
            assert int(item.get_attribute("data-node")) == child.node
            crops = item.locator("figure.crop img.photo")
            assert crops.count() >= 1 and crops.first.is_visible()
            share = item.locator(f".value[data-method='{method}']")
            assert share.is_visible() and share.locator("b").inner_text() == pct(child.share_of_parent[method])
    _check_images(page)
    _shot(page, "cards-subconcepts-class.png")


@pytest.mark.browser
def test_each_subconcept_shows_its_own_visualisation_with_the_same_toggle(page, cards_atlas, cards_run):
    from concepts.schema import open_run

    folder = open_run(cards_run)
    tree, sub = folder.concept_tree(TENCH), folder.fviz(TENCH).subconcepts
    assert sub is not None and len(sub) == tree.n_subconcepts == 8
    nodes = [n.node for n in tree.nodes[tree.n_concepts:]]
    images = {int(node): sub.images[row].astype(np.float64) for row, node in enumerate(sub.node)}
    page.goto((cards_atlas / "classes" / f"{TENCH}.html").as_uri())
    page.evaluate("() => document.querySelectorAll('details.subconcepts').forEach(d => { d.open = true; })")
    items = page.locator("#concept-cards li.subconcept")
    assert items.count() == len(nodes)
    for i in range(items.count()):
        item = items.nth(i)
        node = int(item.get_attribute("data-node"))
        figure = item.locator(".sub-body > .visualisation")
        assert figure.count() == 1 and figure.locator("img.plain").is_visible()
        assert not figure.locator("img.seen").is_visible()
        shown = _decoded(cards_atlas, figure, "img.plain")[0]
        distances = {n: np.abs(shown - image).mean() for n, image in images.items()}
        assert min(distances, key=distances.get) == node and distances[node] < 12, (node, distances)
        row = sub.row(node)
        verdict = "passes" if sub.excited[row] else "fails"
        assert f"{verdict} the check against its siblings" in figure.locator("figcaption").inner_text()
        assert ("fails" in (figure.get_attribute("class") or "")) == (not sub.excited[row])
    page.check("#fviz-alpha")  # the page's one toggle shows every image through its transparency map
    for i in range(items.count()):
        figure = items.nth(i).locator(".sub-body > .visualisation")
        assert figure.locator("img.seen").is_visible() and not figure.locator("img.plain").is_visible()
    page.uncheck("#fviz-alpha")
    first = items.first.locator(".sub-body > .visualisation .pic")
    first.hover()  # hovering shows the transparency view too
    assert first.locator("img.seen").is_visible()
    assert _check_images(page) > 0
    _shot(page, "cards-subconcepts-fviz-class.png")
    page.goto((cards_atlas / "classes" / TENCH / "c0.html").as_uri())  # the concept page lists them open
    figures = page.locator("#subconcepts li.subconcept .sub-body > .visualisation img.plain")
    assert figures.count() == len(tree.children(0)) and figures.first.is_visible()
    _check_images(page)


def test_export_lists_every_subconcept_visualisation_with_its_sha256(cards_run, tmp_path):
    from PIL import Image

    from concepts.export import export_run
    from concepts.schema import file_sha256, open_run, read_manifest

    out = export_run(cards_run, out=tmp_path / "exports", progress=False)
    manifest = read_manifest(out)
    for stem in CLASSES:
        sub = open_run(cards_run).fviz(stem).subconcepts
        for row, node in enumerate(sub.node.tolist()):
            for name in (f"fviz/{stem}/subconcept_{node}.png", f"fviz/{stem}/subconcept_{node}_alpha.png"):
                entry = manifest["files"][name]
                assert entry["sha256"] == file_sha256(out / name) and "subconcept" in entry["description"]
            with Image.open(out / f"fviz/{stem}/subconcept_{node}.png") as handle:
                assert np.array_equal(np.asarray(handle.convert("RGB")), sub.images[row])
        assert f"fviz/{stem}/concept_0.png" in manifest["files"]


def test_every_subconcept_crop_opens_an_image_page(cards_run, tmp_path):
    """With few images on the map (max_points), the photos of sub-concept crops still get their pages."""
    from concepts.atlas import build_atlas

    site = build_atlas(cards_run, out=tmp_path / "atlas", top_k=2, max_points=1, n_examples=1,
                       progress=False).parent
    html = (site / "classes" / f"{TENCH}.html").read_text(encoding="utf-8")
    subs = html[html.index('class="subconcepts"'):]
    links = set(re.findall(r'href="([^"]+/image\.html)\?i=(\d+)"', subs))
    assert links
    for link, image in links:
        assert (site / "classes" / link).is_file() and image in image_data((site / "classes" / link).parent)["images"]


def test_subconcept_crops_are_the_strongest_rows_of_the_node(cards_run):
    from concepts.atlas.subconcepts import node_crops
    from concepts.schema.classdata import load_class

    data = load_class(cards_run, TENCH, with_maps=False)
    tree = data.tree
    for i in range(tree.n_nodes):
        rows, coefficients = np.asarray(tree.rows[i]), np.asarray(tree.coefficients[i])
        crops = node_crops(data, rows, coefficients, 5)
        values = [c.coefficient for c in crops]
        assert crops and values == sorted(values, reverse=True)
        assert len({c.image for c in crops}) == len(crops)  # one per photo
        assert values[0] == pytest.approx(coefficients.max())  # the node's strongest row comes first
        assert crops[0].row == int(rows[np.argmax(coefficients)])
        for c in crops:
            assert c.row in set(rows.tolist()) and data.row_image[c.row] == c.image


# ---- no class score ------------------------------------------------------------------------------------------
IMPORTANCE_CLAIMS = ("share of the class logit", "of the logit", "logit explained", "Sobol", "gradient x input",
                     "Rank concepts by", "adds to the logit", "importance of each concept")


@pytest.mark.browser
def test_a_run_without_class_score_shows_prevalence_and_no_importance_claim(page, none_atlas):
    from concepts.schema import open_run

    run = none_atlas.parent
    record = open_run(run).importance(TENCH, maps=False)
    assert record.attrs["importance_kind"] == "prevalence"
    prevalence = record.methods["prevalence"].class_importance
    page.goto((none_atlas / "classes" / f"{TENCH}.html").as_uri())
    text = page.locator("main").inner_text()
    for claim in IMPORTANCE_CLAIMS:
        assert claim.lower() not in text.lower(), claim
    assert "no class score" in page.locator("#no-score").inner_text().lower()
    assert page.locator("#method").count() == 0 and page.locator(".completeness").count() == 0
    assert page.locator("#logit-visualisation").count() == 0  # no logit, no logit image
    chart = page.locator("#importance .chart")
    assert "strongest concept" in chart.locator(".axis").inner_text()
    shown = dict(zip(chart.locator(".r .l").all_inner_texts(), chart.locator(".r > b").all_inner_texts()))
    assert shown == {f"concept {k}": pct(v) for k, v in enumerate(prevalence)}
    assert "prevalence" in page.locator("#c0 header .value").inner_text()
    assert page.locator("#concept-cards .visualisation img.plain").count() == 4  # fviz still shown
    _check_images(page)
    _shot(page, "cards-prevalence-class.png")
    page.goto((none_atlas / "classes" / TENCH / "c0.html").as_uri())
    text = page.locator("main").inner_text()
    for claim in IMPORTANCE_CLAIMS:
        assert claim.lower() not in text.lower(), claim
    assert page.locator("canvas[data-k='signed']").count() == 0  # no contribution maps
    assert page.locator("#distribution").count() == 0 and page.locator("#no-score").is_visible()
    _check_images(page)
    _shot(page, "cards-prevalence-concept.png")
    page.goto((none_atlas / "index.html").as_uri())
    assert page.locator(".class-card .no-score").count() == 2
    assert "of the logit" not in page.locator("#classes").inner_text()
    page.goto((none_atlas / "classes" / TENCH / "c0.html").as_uri())
    page.locator("figure.map-one a, figure.crop a").first.click()
    page.wait_for_load_state("load")
    text = page.locator("main").inner_text()
    assert "Class logit" not in text and "predicts" not in text and page.locator("#no-score").is_visible()


# ---- phones ------------------------------------------------------------------------------------------------------
@pytest.mark.browser
def test_the_new_parts_fit_a_phone(phone, cards_atlas, none_atlas):
    for site, url, name in ((cards_atlas, f"classes/{TENCH}.html", "cards-class-390px.png"),
                            (cards_atlas, f"classes/{TENCH}/c0.html", "cards-concept-390px.png"),
                            (none_atlas, f"classes/{TENCH}.html", "cards-prevalence-class-390px.png")):
        phone.goto((site / url).as_uri())
        phone.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
        if phone.locator("#fviz-alpha").count():
            phone.check("#fviz-alpha")
            assert phone.locator(".visualisation img.seen").first.is_visible()
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
        small = phone.evaluate("""() => Array.from(document.querySelectorAll(
            '.concept-label, .sub-head, .visualisation figcaption')).filter(e => e.offsetParent !== null)
            .map(e => parseFloat(getComputedStyle(e).fontSize)).filter(s => s < 11)""")
        assert not small
        _shot(phone, name)
