"""The atlas in a real browser: Debian's chromium driven by Playwright, pages opened from disk.

Needs /usr/bin/chromium and the playwright package (no browser download); skipped otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from atlas_fakerun import EVIL_NAME
from concepts.schema import safe_filename

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CONCEPTS_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "atlas"

LOAD_ALL_IMAGES = """
async () => Promise.all(Array.from(document.images).map(async (img) => {
  img.loading = 'eager';
  try { await img.decode(); } catch (e) { /* reported as width 0 */ }
  return [img.getAttribute('src'), img.complete, img.naturalWidth];
}))
"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda msg: page.problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda exc: page.problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: page.problems.append(f"request failed: {req.url}"))
    yield page
    context.close()


def _check_images(page):
    images = page.evaluate(LOAD_ALL_IMAGES)
    assert images, "no image on the page"
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert not broken, f"broken images: {broken[:5]}"
    return len(images)


def _shares(page):
    return [float(v) for v in page.eval_on_selector_all(".concept-card", "els => els.map(e => e.dataset.share)")]


def test_atlas_in_chromium(page, fake_atlas):
    page.goto((fake_atlas / "index.html").as_uri())
    assert page.locator(".class-card").count() == 3
    _check_images(page)

    # filter box
    page.fill("#filter", "spring")
    assert page.locator(".class-card:visible").count() == 1
    assert page.locator(".class-card:visible .class-name").inner_text() == "English springer"
    page.fill("#filter", "zzz-no-such-class")
    assert page.locator(".class-card:visible").count() == 0
    page.fill("#filter", "")
    assert page.locator(".class-card:visible").count() == 3

    # sort by concentration, then by name
    page.select_option("#sort", "concentration")
    values = [float(v) for v in page.eval_on_selector_all(".class-card", "els => els.map(e => e.dataset.concentration)")]
    assert values == sorted(values, reverse=True)
    page.select_option("#sort", "name")
    names = page.eval_on_selector_all(".class-card", "els => els.map(e => e.dataset.name)")
    assert names == sorted(names)

    # the class name with markup is text, and its script never ran
    assert EVIL_NAME in page.locator(".class-name").all_inner_texts()
    assert page.evaluate("typeof window.__pwned") == "undefined"

    # index -> class page
    page.click(".class-card[data-id='n01440764'] a.class-link")
    page.wait_for_load_state("load")
    assert page.url.endswith("classes/n01440764.html")
    n_images = _check_images(page)
    assert n_images > 10
    shares = _shares(page)
    assert len(shares) == 5 and shares == sorted(shares, reverse=True)
    assert page.locator(".concept-card").first.locator(".share").inner_text().endswith("(sobol)")
    assert page.locator(".example").count() == 4 and page.locator(".embedding circle").count() == 6

    # heatmap toggle hides the overlays
    assert page.locator(".crop img.heat").first.is_visible()
    page.uncheck("#show-heat")
    assert not page.locator(".crop img.heat").first.is_visible()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "class-n01440764.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # similar-concept link -> the planted twin in the other class
    page.locator("#c0 a.similar-link").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("classes/n02102040.html#c0")
    assert page.evaluate("document.querySelector(':target').id") == "c0"
    _check_images(page)

    # the class with markup in its name
    page.goto((fake_atlas / "classes" / f"{safe_filename('n99<evil>')}.html").as_uri())
    assert page.locator("h1.class-title").inner_text() == EVIL_NAME
    assert page.evaluate("typeof window.__pwned") == "undefined"
    _check_images(page)
    page.screenshot(path=str(ARTIFACTS / "class-markup-name.png"))

    assert not page.problems, page.problems


def test_real_atlas_in_chromium(page, real_atlas):
    page.goto((real_atlas / "index.html").as_uri())
    _check_images(page)
    cards = page.locator(".class-card")
    assert cards.count() >= 2
    cards.first.locator("a.class-link").click()
    page.wait_for_load_state("load")
    assert "/classes/" in page.url
    _check_images(page)
    shares = _shares(page)
    assert len(shares) >= 2 and shares == sorted(shares, reverse=True)
    link = page.locator("a.similar-link").first
    target = link.get_attribute("href")
    link.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(target.replace("../classes/", "classes/"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "real-class.png"), full_page=True)
    assert not page.problems, page.problems


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
        shares = _shares(page)
        assert shares == sorted(shares, reverse=True)
        assert not page.problems, page.problems
    finally:
        server.shutdown()
        server.server_close()
