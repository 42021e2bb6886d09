"""The shared dictionary's pages and the layer switcher in a real browser (Debian's chromium, file://), with the
helpers and fixtures of test_atlas_browser.py (the session's one browser is tests/atlas/conftest.py's): no broken image, no console error, no sideways scrolling at 390 px.
Screenshots go to test-artifacts/atlas/ (desktop and 390 px)."""
from __future__ import annotations

import re

import pytest

from concepts.schema import RunFolder, safe_filename
from test_atlas_browser import _check_images, _shot  # the page, phone and browser fixtures: conftest.py

pytestmark = pytest.mark.browser

LAYER = "blocks.5"
HREF = "e => new URL(e.getAttribute('href'), document.baseURI).href"


def _atoms_listed(page) -> list[int]:
    return [int(v) for v in page.eval_on_selector_all("tr.atom-row", "els => els.map(e => e.dataset.atom)")]


def test_the_dictionary_lists_every_atom_and_the_class_pages_open_it(page, dataset_atlas, real_run_dataset):
    folder = RunFolder(real_run_dataset)
    n_atoms = int(folder.dictionary().attrs["n_concepts"])
    page.goto((dataset_atlas / "dictionary" / "index.html").as_uri())
    listed, n_pages = [], 0
    while True:  # the header's "next atoms" link walks the paged index
        n_pages += 1
        listed += _atoms_listed(page)
        assert _check_images(page) > 0
        nxt = page.locator("header.top a.next")
        if not nxt.count():
            break
        nxt.click()
        page.wait_for_load_state("load")
    assert sorted(listed) == list(range(n_atoms)) and n_pages == 3
    for class_id in folder.classes("factorize"):
        atoms = folder.concepts(class_id, coefficients=False).state["atoms"]
        class_url = (dataset_atlas / "classes" / f"{safe_filename(class_id)}.html").as_uri()
        page.goto(class_url)
        cards = page.locator("#concept-cards .concept-card")
        assert cards.count() == len(atoms)
        for pos in range(cards.count()):
            page.goto(class_url)
            card = page.locator("#concept-cards .concept-card").nth(pos)
            concept = int(card.get_attribute("data-concept"))
            shown = card.locator(".share .value:not([hidden]) strong").first.inner_text()
            method = card.locator(".share .value:not([hidden])").first.get_attribute("data-method")
            card.locator("a.atom-link").click()
            page.wait_for_load_state("load")
            assert page.url.endswith(f"/dictionary/a{atoms[concept]}.html")
            assert page.locator("h1.atom-title").inner_text().startswith(f"Atom {atoms[concept]} ")
            row = page.locator(f"table.atom-importance tr[data-class='{class_id}'][data-concept='{concept}']")
            assert row.count() == 1
            assert row.locator(f"td[data-method='{method}']").inner_text().startswith(shown)  # as the card says
            _check_images(page)
        # and back: the atom page's concept link opens the class's concept page
        row.locator("a", has_text=f"concept {concept}").click()
        page.wait_for_load_state("load")
        assert page.url.endswith(f"/classes/{safe_filename(class_id)}/c{concept}.html")
        assert page.locator("h1.concept-title").inner_text().startswith(f"Concept {concept} of ")


def test_the_layer_switcher_opens_the_same_class_at_the_other_layer(page, layers_atlas, real_run_layers):
    for class_id in RunFolder(real_run_layers).classes("importance"):
        stem = safe_filename(class_id)
        page.goto((layers_atlas / "classes" / f"{stem}.html").as_uri())
        name = page.locator("h1.class-title").inner_text()
        assert page.locator("nav.layers .current").inner_text() == "features"
        page.locator("nav.layers a.layer", has_text=LAYER).click()
        page.wait_for_load_state("load")
        assert page.url.endswith(f"/layers/{safe_filename(LAYER)}/classes/{stem}.html")
        assert page.locator("h1.class-title").inner_text() == name
        assert page.locator("nav.layers .current").inner_text() == LAYER
        assert f"layer {LAYER}" in page.locator("p.meta").first.inner_text()
        _check_images(page)
        page.locator("#concept-cards h3 a").first.click()  # a concept page of blocks.5 ...
        page.wait_for_load_state("load")
        assert re.search(rf"/layers/{re.escape(LAYER)}/classes/{stem}/c\d+\.html$", page.url)
        page.locator("nav.layers a.layer", has_text="features").click()  # ... switches to the class at features
        page.wait_for_load_state("load")
        assert page.url == (layers_atlas / "classes" / f"{stem}.html").as_uri()
    page.goto((layers_atlas / "index.html").as_uri())
    page.locator("nav.layers a.layer", has_text=LAYER).click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/layers/{LAYER}/index.html") and page.locator(".class-card").count() == 2


def test_screenshots_of_the_dictionary_and_the_switcher(page, phone, dataset_atlas, layers_atlas):
    stem = sorted(p.stem for p in (layers_atlas / "classes").glob("*.html"))[0]
    for shot, name in ((page, ""), (phone, "-390px")):
        shot.goto((dataset_atlas / "dictionary" / "index.html").as_uri())
        _shot(shot, f"dictionary{name}.png")
        atom = shot.locator("tr.atom-row a.atom").first.evaluate(HREF)
        shot.goto(atom)
        _shot(shot, f"atom{name}.png")
        shot.goto((layers_atlas / "classes" / f"{stem}.html").as_uri())
        assert shot.locator("nav.layers").is_visible()
        _shot(shot, f"class-layers{name}.png")
        shot.goto((layers_atlas / "layers" / LAYER / "classes" / f"{stem}.html").as_uri())
        _shot(shot, f"class-layer-{LAYER}{name}.png")
    for url in (dataset_atlas / "dictionary" / "index.html", dataset_atlas / "dictionary" / "a0.html",
                layers_atlas / "classes" / f"{stem}.html"):
        phone.goto(url.as_uri())
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
