"""The atlas in a real browser: Debian's chromium driven by Playwright, pages opened from disk (file://).

Needs /usr/bin/chromium and the playwright package (no browser download); skipped otherwise. One browser for the
session (the `browser` fixture) and the session's atlases (tests/atlas/conftest.py), so the pages are built once.
Screenshots go to test-artifacts/atlas/ (desktop and 390 px phone width).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from atlas_fakerun import EVIL_NAME, shown_order
from concepts.evidence.numbers import pct
from concepts.schema import safe_filename

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "atlas"

LOAD_ALL_IMAGES = """
async () => Promise.all(Array.from(document.images).map(async (img) => {
  img.loading = 'eager';
  try { await img.decode(); } catch (e) { /* reported as width 0 */ }
  return [img.getAttribute('src'), img.complete, img.naturalWidth];
}))
"""

#: every element with its own text inside a chart: its text, computed font size and rendered height
CHART_TEXT = """
() => Array.from(document.querySelectorAll('.chart *, .chart')).filter(el => {
  if (el.offsetParent === null) { return false; }
  return Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
}).map(el => [el.textContent.trim().slice(0, 30), parseFloat(getComputedStyle(el).fontSize)])
"""


def _page(browser, width=1280, **options):
    context = browser.new_context(viewport={"width": width, "height": 900}, **options)
    page = context.new_page()
    page.problems = []
    page.on("console", lambda msg: page.problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: page.problems.append(f"page error: {exc}"))
    # a request cut short by the next navigation (ERR_ABORTED) is not a missing file (ERR_FILE_NOT_FOUND)
    page.on("requestfailed", lambda req: page.problems.append(f"request failed: {req.url} ({req.failure})")
            if "ERR_ABORTED" not in str(req.failure) else None)
    return context, page



def _check_images(page) -> int:
    images = page.evaluate(LOAD_ALL_IMAGES)
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert not broken, f"broken images: {broken[:5]}"
    return len(images)


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    _check_images(page)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def _card_order(page) -> list[int]:
    return [int(v) for v in page.eval_on_selector_all("#concept-cards .concept-card",
                                                       "els => els.map(e => e.dataset.concept)")]


def test_explained_share_and_residual_equal_the_exported_diagnostics(page, real_atlas, real_export):
    import pandas as pd

    table = pd.read_csv(real_export / "diagnostics.csv", dtype={"class_id": str, "stem": str})
    assert len(table) >= 2
    for row in table.itertuples():
        page.goto((real_atlas / "classes" / f"{row.stem}.html").as_uri())
        assert page.locator("#explained-share").inner_text() == pct(row.explained_share)
        assert float(page.locator("#explained-share").get_attribute("data-value")) == pytest.approx(
            row.explained_share, rel=1e-5)
        assert float(page.locator("#residual-share").get_attribute("data-value")) == pytest.approx(
            row.residual_share, rel=1e-5)
        bars = page.locator("#explained .completeness .r")
        shown = dict(zip(bars.locator(".l").all_inner_texts(), bars.locator("b").all_inner_texts()))
        assert shown == {"concepts": pct(row.explained_share), "residual": pct(row.residual_share),
                         "bias": pct(row.bias_share)}
        assert row.decomposition == "exact" and 0 < row.explained_share < 1.2
        _check_images(page)


def test_switching_the_method_reorders_the_cards(page, fake_atlas, fake_run):
    _, truth = fake_run
    t = truth["n01440764"]
    page.goto((fake_atlas / "classes" / "n01440764.html").as_uri())
    assert _card_order(page) == shown_order(t, "gradient")
    orders = {}
    for method in ("sobol", "occlusion", "gradient"):
        page.select_option("#method", method)
        orders[method] = _card_order(page)
        assert orders[method] == shown_order(t, method)
        visible = page.locator(".method-chart:visible")
        assert visible.count() == 1 and method in visible.get_attribute("data-method").split()
        first = page.locator("#concept-cards .concept-card").first.locator("header .value:visible")
        assert first.count() == 1 and first.get_attribute("data-method") == method
    assert len({tuple(o) for o in orders.values()}) > 1  # the methods really rank differently here


def test_the_exported_ranking_is_the_page_ranking(page, real_atlas, real_export):
    import pandas as pd

    table = pd.read_csv(real_export / "importances.csv", dtype={"class_id": str, "stem": str})
    stem = sorted(table["stem"].unique())[0]
    page.goto((real_atlas / "classes" / f"{stem}.html").as_uri())
    for method in ("sobol", "gradient", "occlusion"):
        page.select_option("#method", method)
        rows = table[(table.stem == stem) & (table.method == method)].sort_values("rank")
        assert _card_order(page) == rows["concept"].tolist()
    assert page.locator(".same-method").first.is_visible()


def test_every_crop_image_and_dot_opens_its_page(page, real_atlas):
    stem = sorted(p.stem for p in (real_atlas / "classes").glob("*.html"))[0]
    url = (real_atlas / "classes" / f"{stem}.html").as_uri()
    page.goto(url)
    links = {kind: page.eval_on_selector_all(selector, "els => els.map(e => [new URL(e.getAttribute('href'), "
                                                        "document.baseURI).href, e.getAttribute('title') || ''])")
             for kind, selector in (("crop", "figure.crop a"), ("image", "figure.example a"),
                                    ("dot", "svg.embedding a.dot"))}
    assert all(links.values()), {k: len(v) for k, v in links.items()}
    for kind, selector in (("crop", "figure.crop a"), ("image", "figure.example a"), ("dot", "svg.embedding a")):
        page.goto(url)
        target = page.locator(selector).first
        href = target.evaluate("e => new URL(e.getAttribute('href'), document.baseURI).href")
        if kind == "dot":
            target.locator("circle").click()
        else:
            target.click()
        page.wait_for_load_state("load")
        assert page.url == href and re.search(r"/image\.html\?i=\d+$", page.url)
        assert page.locator("h1.image-title").inner_text()
    for kind, found in links.items():  # every one of them: a page whose title is that image
        for href, title in sorted(set(map(tuple, found))):
            page.goto(href)
            name = page.locator("h1.image-title").inner_text()
            assert name and (not title or title.startswith(name)), (kind, href, title, name)
            _check_images(page)
    page.goto(url)
    page.locator("#concept-cards h3 a").first.click()
    page.wait_for_load_state("load")
    assert re.search(r"/c\d+\.html$", page.url) and page.locator("h1.concept-title").is_visible()
    _check_images(page)


def test_the_url_restores_a_filtered_sorted_index(page, fake_atlas):
    index = (fake_atlas / "index.html").as_uri()
    page.goto(index)
    page.fill("#filter", "spring")
    page.select_option("#sort", "concentration")
    assert "q=spring" in page.url and "sort=concentration" in page.url
    saved = page.url
    page.goto("about:blank")
    page.goto(saved)
    assert page.input_value("#filter") == "spring" and page.input_value("#sort") == "concentration"
    assert page.locator(".class-card:visible").count() == 1
    assert page.locator(".class-card:visible .class-name").inner_text() == "English springer"
    page.goto(index + "#sort=explained")
    values = [float(v) for v in page.eval_on_selector_all(".class-card", "els => els.map(e => e.dataset.explained)")]
    assert values == sorted(values, reverse=True) and page.locator(".class-card:visible").count() == 3
    page.goto(index + "#q=zzz-none")
    assert page.locator(".class-card:visible").count() == 0 and page.locator("#count").inner_text() == "0 shown"
    assert EVIL_NAME not in page.locator("#classes").inner_text()  # filtered out, and never run as markup
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_navigation_theme_and_tint(page, fake_atlas):
    page.goto((fake_atlas / "classes" / "n01440764.html").as_uri())
    page.click("header .next")
    page.wait_for_load_state("load")
    assert page.url.endswith("classes/n02102040.html")
    page.click("#random-class")
    page.wait_for_load_state("load")
    assert re.search(r"classes/[^/]+\.html$", page.url)
    page.goto((fake_atlas / "classes" / "n01440764.html").as_uri())
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"  # kept
    page.click("#theme")
    tint = page.locator("figure.crop canvas.tint").first
    assert not tint.is_visible()
    page.check("#tint")
    assert tint.is_visible()
    alpha = page.evaluate("""() => { const c = document.querySelector('canvas.tint');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let m = 0; for (let i = 3; i < d.length; i += 4) { m = Math.max(m, d[i]); } return m; }""")
    assert alpha > 0  # the presence map was drawn


def test_dark_mode_follows_the_system(browser, fake_atlas):
    context, page = _page(browser, color_scheme="dark")
    page.goto((fake_atlas / "index.html").as_uri())
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 23, 26)"
    assert not page.problems
    context.close()


def test_phone_width_keeps_chart_text_readable(phone, real_atlas):
    stem = sorted(p.stem for p in (real_atlas / "classes").glob("*.html"))[0]
    for url in (f"classes/{stem}.html", f"classes/{stem}/c0.html"):
        phone.goto((real_atlas / url).as_uri())
        texts = phone.evaluate(CHART_TEXT)
        assert len(texts) > 10
        small = [t for t in texts if t[1] < 11]
        assert not small, small[:5]
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways scrolling
        assert not phone.eval_on_selector_all(".chart svg text", "els => els.length")
    phone.goto((real_atlas / "classes" / f"{stem}.html").as_uri())
    _shot(phone, "class-390px.png")
    phone.goto((real_atlas / "classes" / stem / "image.html").as_uri())  # its first image
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    texts = phone.evaluate(CHART_TEXT)
    assert texts and not [t for t in texts if t[1] < 11]
    _shot(phone, "image-390px.png")


def test_screenshots_of_the_pages(page, real_atlas, fake_atlas):
    stem = sorted(p.stem for p in (real_atlas / "classes").glob("*.html"))[0]
    page.goto((real_atlas / "classes" / f"{stem}.html").as_uri())
    _shot(page, "class.png")
    wrong = page.locator("[data-kind='wrong'] figure.example a")
    (wrong.first if wrong.count() else page.locator("figure.example a").first).click()
    page.wait_for_load_state("load")
    _shot(page, "image.png")
    page.goto((real_atlas / "classes" / stem / "c0.html").as_uri())
    _shot(page, "concept.png")
    page.goto((fake_atlas / "classes" / f"{safe_filename('n99<evil>')}.html").as_uri())
    assert page.locator("h1.class-title").inner_text() == EVIL_NAME
    assert page.evaluate("typeof window.__pwned") == "undefined"
    _shot(page, "class-markup-name.png")


def test_atlas_from_a_static_server(page, fake_atlas):
    """The same site served over HTTP by a plain static server (no server code of ours)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(fake_atlas))
    handler.log_message = lambda *args, **kwargs: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        page.goto(base + "index.html")
        _check_images(page)
        page.click(".class-card[data-id='n02102040'] a.class-link")
        page.wait_for_load_state("load")
        assert page.url == base + "classes/n02102040.html"
        _check_images(page)
        page.locator("figure.crop a").first.click()
        page.wait_for_load_state("load")
        assert re.search(r"/classes/n02102040/image\.html\?i=\d+$", page.url)
        assert page.locator("#decomposition div.r").count() and page.locator("figure.map-one").count()
        _check_images(page)
    finally:
        server.shutdown()
        server.server_close()


def test_image_pages_are_rendered_from_their_class_data(page, real_atlas, fake_atlas):
    """The class's image page is drawn by static/imagepage.js from images.js: the decomposition adds up to the
    logit, the links and maps are there and drawn, and a class name with markup stays text."""
    from atlas_html import image_data

    folder = sorted(p for p in (real_atlas / "classes").iterdir() if p.is_dir())[0]
    data = image_data(folder)
    for n in sorted(data["images"], key=int)[:3]:
        image = data["images"][n]
        page.goto((folder / "image.html").as_uri() + f"?i={n}")
        assert page.locator("h1.image-title").inner_text() == image["name"] and image["name"] in page.title()
        logit = float(page.locator("strong.logit").inner_text())
        assert page.locator("strong.logit").inner_text() == image["logit"]
        rows = page.locator("#decomposition div.r")
        values = [float(v) for v in rows.locator("b").all_inner_texts()]
        assert len(values) == len(image["charts"][0]["bars"]) and rows.last.inner_text().startswith("bias")
        assert sum(values) == pytest.approx(logit, abs=0.02 * len(values) + 0.01)
        assert page.locator("figure.map-one").count() == len(image["maps"]) == 5
        drawn = page.eval_on_selector_all("canvas.map", "els => els.map(c => Array.from(c.getContext('2d')"
                                          ".getImageData(0, 0, c.width, c.height).data)"
                                          ".some((v, i) => i % 4 == 3 && v))")
        assert len(drawn) == 6 and all(drawn)  # the overlay and five presence maps, each drawn
        page.locator("#decomposition div.r a").first.click()
        page.wait_for_load_state("load")
        assert re.search(r"/c\d+\.html$", page.url) and page.locator("h1.concept-title").is_visible()
    page.goto((folder / "image.html").as_uri())  # no image named: the first, and the URL says so
    first, second = data["order"][:2]
    assert page.url.endswith(f"?i={first}") and page.locator("header a.prev").count() == 0
    page.click("header a.next")  # previous / next walk the images in order; the back button comes back
    page.wait_for_load_state("load")
    assert page.url.endswith(f"?i={second}")
    assert page.locator("h1.image-title").inner_text() == data["images"][str(second)]["name"]
    assert page.locator("header a.prev").get_attribute("href") == f"?i={first}"
    page.go_back()
    page.wait_for_load_state("load")
    assert page.locator("h1.image-title").inner_text() == data["images"][str(first)]["name"]
    _shot(page, "image-page.png")
    evil = fake_atlas / "classes" / safe_filename("n99<evil>")
    page.goto((evil / "image.html").as_uri())
    assert EVIL_NAME in page.locator(".prediction").inner_text()
    assert page.evaluate("typeof window.__pwned") == "undefined"
