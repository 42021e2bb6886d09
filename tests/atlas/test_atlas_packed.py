"""The deflated page data: static/inflate.js (atlasInflate, run in chromium) reads back what packed.py writes, for
every kind of DEFLATE block zlib emits (stored, fixed and dynamic codes), and the Python side round-trips."""
from __future__ import annotations

import base64
import random
import zlib

import pytest

from concepts.atlas.packed import data_script, deflate_text, inflate_text, read_data_script
from concepts.atlas.site import STATIC


def _texts() -> list[str]:
    rng = random.Random(0)
    markup = "".join(f'<figure class="crop"><a href="image.html?i={rng.randrange(50)}" '
                     f'title="ILSVRC2012_val_{rng.randrange(10**8):08d}.JPEG">é ✓ {rng.random():.4f}</a></figure>'
                     for _ in range(3000))  # > 64 kB, several blocks
    noise = "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(5000))  # poorly compressible, multi-byte UTF-8
    return ["", "a", "abc" * 1000, markup, noise]


def _raw(text: str, level: int) -> str:
    packer = zlib.compressobj(level, zlib.DEFLATED, -15)
    return base64.b64encode(packer.compress(text.encode("utf-8")) + packer.flush()).decode("ascii")


def test_python_round_trip_and_data_script():
    for text in _texts():
        assert inflate_text(deflate_text(text)) == text
    value = {"3": "<p>concept 3 &amp; ü</p>", "list": [1, 2.5, None]}
    assert read_data_script(data_script("ATLAS_X", value, "test"), "ATLAS_X") == value
    assert len(deflate_text(_texts()[3])) < len(_texts()[3]) / 3  # the markup compresses


@pytest.mark.parametrize("level", [0, 1, 9])  # 0: stored blocks only; 1: fixed codes mostly; 9: dynamic codes
def test_inflate_js_reads_what_zlib_writes(page, level):
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(STATIC / "inflate.js"))
    for text in _texts():
        assert page.evaluate("s => window.atlasInflate(s)", _raw(text, level)) == text


def test_inflate_js_refuses_truncated_data(page):
    page.set_content("<html><body></body></html>")
    page.add_script_tag(path=str(STATIC / "inflate.js"))
    whole = base64.b64decode(deflate_text(_texts()[3]))
    cut = base64.b64encode(whole[: len(whole) // 2]).decode("ascii")
    error = page.evaluate("s => { try { window.atlasInflate(s); return ''; } catch (e) { return String(e); } }", cut)
    assert "atlasInflate" in error


def test_concept_pages_in_the_browser_are_their_rendered_content(page, fake_atlas):
    """Each concept page drawn by conceptpage.js from concepts.js has the very markup the other tests read (the
    build's content, atlas_html.rendered_html), parsed by the same browser; the header stays static."""
    from atlas_html import rendered_html

    folder = next(p for p in sorted((fake_atlas / "classes").iterdir()) if p.is_dir() and (p / "c0.html").exists())
    pages = sorted(folder.glob("c*.html"))
    assert len(pages) >= 2
    for path in pages:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        live = page.evaluate("() => document.querySelector('main').outerHTML")
        expected = page.evaluate("h => new DOMParser().parseFromString(h, 'text/html').querySelector('main').outerHTML",
                                 rendered_html(path))
        assert "concept-page" not in live and "concept-title" in live
        assert live == expected
        assert page.locator("h1.concept-title").inner_text().startswith(f"Concept {path.stem[1:]} of")
