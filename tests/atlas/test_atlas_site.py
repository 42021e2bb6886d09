"""Structure of the atlas website, checked by parsing the HTML (no browser needed)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from atlas_fakerun import EVIL_NAME
from atlas_html import parse
from concepts.schema import safe_filename
from concepts.atlas import build_atlas, write_sheets
from concepts.atlas.analysis import n_important, top_rows
from concepts.atlas.view import display_box
from concepts.errors import ConceptsError

TOP_K = 4  # as in the fake_atlas fixture


def _primary(methods: dict) -> str:
    return next(m for m in ("sobol", "gradient", "occlusion") if m in methods)


def _cards(page):
    return page.find_all("article", cls="concept-card")


def _local_refs(page, page_path: Path):
    for el in page.iter():
        for attr in ("src", "href"):
            if attr in el.attrs:
                yield el, attr, el.attrs[attr]


def test_index_lists_every_class_with_its_numbers(any_atlas):
    fake_atlas, truth = any_atlas
    index = parse(fake_atlas / "index.html")
    cards = index.find_all("li", cls="class-card")
    assert len(cards) == len(truth)
    by_id = {card.attrs["data-id"]: card for card in cards}
    for class_id, t in truth.items():
        card = by_id[class_id.lower()]
        link = card.find("a", cls="class-link")
        assert link.attrs["href"] == f"classes/{safe_filename(class_id)}.html"
        assert (fake_atlas / link.attrs["href"]).is_file()
        kept = int((~t["skipped"]).sum())
        assert card.find("span", cls="n-images").text == str(kept)
        share = t["methods"][_primary(t["methods"])]["share"]
        assert card.find("span", cls="n-important").text == str(n_important(share))
        thumb = card.find("img", cls="thumb")
        assert (fake_atlas / thumb.attrs["src"]).is_file()
        assert float(card.attrs["data-concentration"]) == pytest.approx(float(((share / share.sum()) ** 2).sum()),
                                                                        abs=1e-5)
    assert index.find("input", id="filter") and index.find("select", id="sort")


def test_every_reference_is_local_relative_and_exists(any_atlas):
    fake_atlas, truth = any_atlas
    pages = [fake_atlas / "index.html", *sorted((fake_atlas / "classes").glob("*.html"))]
    assert len(pages) == len(truth) + 1
    checked = 0
    for page_path in pages:
        page = parse(page_path)
        for el, attr, ref in _local_refs(page, page_path):
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"external reference {ref} in {page_path.name}"
            assert not ref.startswith("/"), f"absolute path {ref}"
            target = page_path if not parts.path else (page_path.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{page_path.name}: {attr}={ref} does not exist"
            assert fake_atlas.resolve() in target.parents or target == page_path
            if parts.fragment:
                assert parse(target).find_all(id=parts.fragment), f"{ref}: no element with that id"
            checked += 1
    assert checked > 50
    css = (fake_atlas / "static" / "atlas.css").read_text()
    assert "url(" not in css and "@import" not in css


def test_concept_cards_descend_by_importance_and_match_the_run(any_atlas):
    fake_atlas, truth = any_atlas
    for class_id, t in truth.items():
        method = _primary(t["methods"])
        share = t["methods"][method]["share"]
        page = parse(fake_atlas / "classes" / f"{safe_filename(class_id)}.html")
        cards = _cards(page)
        assert len(cards) == len(share)
        shares = [float(c.attrs["data-share"]) for c in cards]
        assert shares == sorted(shares, reverse=True)
        concepts = [int(c.attrs["data-concept"]) for c in cards]
        assert concepts == np.argsort(-share.astype(np.float64), kind="stable").tolist()
        np.testing.assert_allclose(shares, share[concepts], atol=1e-7)
        assert [int(c.attrs["data-rank"]) for c in cards] == list(range(1, len(share) + 1))
        assert page.find("strong", cls="method").text == method
        assert f"({method})" in cards[0].find("span", cls="share").text
        if "sobol" in t["methods"]:
            assert f"sobol {100 * share[concepts[0]]:.1f}% [" in cards[0].find("p", cls="methods").text
        bars = page.find("svg", cls="bars").find_all("rect")
        widths = [float(b.attrs["width"]) for b in bars]
        assert widths == sorted(widths, reverse=True) and widths[0] == pytest.approx(300.0)


def test_crops_are_the_rows_with_the_largest_coefficients(any_atlas):
    fake_atlas, truth = any_atlas
    for class_id, t in truth.items():
        stem = safe_filename(class_id)
        page = parse(fake_atlas / "classes" / f"{stem}.html")
        for card in _cards(page):
            k = int(card.attrs["data-concept"])
            coef = np.where(t["skipped"][t["row_image"]][:, None], -np.inf, t["coefficients"])
            expected = top_rows(coef, k, TOP_K, t["row_image"])
            shown = [int(re.search(r"/(\d+)\.jpg$", img.attrs["src"]).group(1))
                     for img in card.find_all("img", cls="photo")]
            assert shown == [int(t["row_image"][r]) for r in expected]
            heats = card.find_all("img", cls="heat")
            assert len(heats) == len(shown)
            assert all(h.attrs["src"].endswith(f"_c{k}.png") for h in heats)
            # the frame shows the crop box: picture shifted by -x0 * scale
            frame = card.find("div", cls="frame")
            x0, y0, x1, y1 = display_box(t["row_box"][expected[0]], 224, 64)
            left = float(re.search(r"left:(-?[\d.]+)px", card.find("img", cls="photo").attrs["style"]).group(1))
            assert left == pytest.approx(-x0 * 112 / (x1 - x0), abs=0.06)
            assert f"width:112px;height:{round((y1 - y0) * 112 / (x1 - x0))}px" in frame.attrs["style"]


def test_skipped_images_are_never_shown(fake_atlas, fake_run):
    _, truth = fake_run
    skipped = np.flatnonzero(truth["n02102040"]["skipped"])
    assert len(skipped) == 1
    html = (fake_atlas / "classes" / "n02102040.html").read_text()
    assert f"img/n02102040/{skipped[0]}.jpg" not in html
    assert not (fake_atlas / "img" / "n02102040" / f"{skipped[0]}.jpg").exists()


def test_similar_concept_links_reach_the_planted_twin(fake_atlas):
    page = parse(fake_atlas / "classes" / "n01440764.html")
    card = page.find("article", id="c0")
    links = card.find_all("a", cls="similar-link")
    assert links[0].attrs["href"] == "../classes/n02102040.html#c0"
    assert "English springer" in links[0].text
    assert len(links) == 3 and all("n01440764" not in a.attrs["href"] for a in links)
    back = parse(fake_atlas / "classes" / "n02102040.html").find("article", id="c0")
    assert back.find_all("a", cls="similar-link")[0].attrs["href"] == "../classes/n01440764.html#c0"


def test_markup_in_class_names_is_shown_as_text(fake_atlas):
    stem = safe_filename("n99<evil>")
    pages = [fake_atlas / "index.html", *(fake_atlas / "classes").glob("*.html")]
    for page_path in pages:
        html = page_path.read_text()
        assert "<script>window" not in html and "<evil>" not in html
        scripts = parse(page_path).find_all("script")
        assert [s.attrs.get("src", "") for s in scripts] in (["static/atlas.js"], ["../static/atlas.js"])
    page = parse(fake_atlas / "classes" / f"{stem}.html")
    assert page.find("h1", cls="class-title").text == EVIL_NAME
    card = [c for c in parse(fake_atlas / "index.html").find_all("li", cls="class-card")
            if c.attrs["data-id"] == "n99<evil>"][0]
    assert card.find("span", cls="class-name").text == EVIL_NAME
    assert card.attrs["data-name"] == EVIL_NAME.lower()


def test_per_image_view_and_embedding(any_atlas):
    fake_atlas, truth = any_atlas
    for class_id, t in truth.items():
        page = parse(fake_atlas / "classes" / f"{safe_filename(class_id)}.html")
        kept = np.flatnonzero(~t["skipped"])
        examples = page.find_all("figure", cls="example")
        logit = np.where(t["skipped"], -np.inf, t["logit"])
        assert [int(e.attrs["data-image"]) for e in examples] == np.argsort(-logit, kind="stable")[:min(4, len(kept))].tolist()
        n_overlay = min(5, len(t["components"]))
        for example in examples:
            swatches = example.find_all("span", cls="swatch")
            colours = [s.attrs["style"] for s in swatches]
            assert len(colours) == n_overlay and len(set(colours)) == n_overlay
            overlay = example.find("img", cls="heat").attrs["src"]
            picture = Image.open(fake_atlas / "classes" / overlay)
            assert picture.mode == "RGBA" and np.asarray(picture)[..., 3].max() > 0
        points = page.find("svg", cls="embedding").find_all("circle")
        assert len(points) == len(kept)


def test_pictures_are_small_and_written_once(any_atlas):
    fake_atlas, _ = any_atlas
    for page_path in (fake_atlas / "classes").glob("*.html"):
        html = page_path.read_text()
        refs = set(re.findall(r'src="\.\./(img/[^"]+)"', html))
        total = page_path.stat().st_size + sum((fake_atlas / r).stat().st_size for r in refs)
        assert total < 400_000, f"{page_path.name} needs {total} bytes"
        assert len(refs) == len(list((fake_atlas / "img" / page_path.stem).iterdir()))
    for jpg in fake_atlas.glob("img/*/*.jpg"):
        with Image.open(jpg) as picture:
            assert picture.format == "JPEG" and picture.size == (192, 192)


def test_missing_photo_is_a_grey_placeholder(fake_run, tmp_path, capsys):
    run, truth = fake_run
    build_atlas(run, classes=["n99<evil>"], top_k=6, sheets=False, out=tmp_path / "site", progress=False)
    assert "1 photo(s) not found or unreadable (shown in grey)" in capsys.readouterr().err
    lost = len(truth["n99<evil>"]["paths"]) - 1
    with Image.open(tmp_path / "site" / "img" / safe_filename("n99<evil>") / f"{lost}.jpg") as picture:
        pix = np.asarray(picture).astype(int)
    assert abs(pix - 200).max() <= 3


def test_sheets_are_png_per_class(any_atlas):
    fake_atlas, truth = any_atlas
    sheets = sorted((fake_atlas / "sheets").glob("*.png"))
    assert [p.stem for p in sheets] == sorted(safe_filename(c) for c in truth)
    for sheet in sheets:
        with Image.open(sheet) as picture:
            assert picture.format == "PNG" and picture.size[0] > 600 and picture.size[1] > 600
            # not blank: the crops put many colours on the sheet
            assert len(picture.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 1000


def test_rebuild_replaces_the_previous_site_and_unknown_classes_fail(fake_run, tmp_path):
    run, _ = fake_run
    site = tmp_path / "site"
    build_atlas(run, classes=["n01440764"], top_k=1, n_examples=1, sheets=False, out=site, progress=False)
    assert (site / "classes" / "n01440764.html").exists()
    build_atlas(run, classes=["n02102040"], top_k=1, n_examples=1, sheets=False, out=site, progress=False)
    assert not (site / "classes" / "n01440764.html").exists() and not (site / "img" / "n01440764").exists()
    assert not (tmp_path / "site.tmp").exists()
    with pytest.raises(ConceptsError, match="unknown class"):
        build_atlas(run, classes=["n00000000"], out=site, progress=False)
    with pytest.raises(ConceptsError, match="does not exist"):
        build_atlas(tmp_path / "nowhere", progress=False)
    paths = write_sheets(run, classes=["n01440764"], out=tmp_path / "sheets", progress=False)
    assert [p.name for p in paths] == ["n01440764.png"] and paths[0].stat().st_size > 10_000


def test_cli_builds_the_atlas(fake_run, tmp_path):
    from concepts.cli import main

    run, _ = fake_run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["atlas", str(run), "--out", str(tmp_path / "a"), "--no-sheets", "--quiet", "--top-k", "2",
                     "--classes", "n01440764,n02102040"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "a" / "classes").iterdir()) == ["n01440764.html", "n02102040.html"]
    assert not (tmp_path / "a" / "sheets").exists()
    assert "PNG sheet" not in (tmp_path / "a" / "classes" / "n01440764.html").read_text()
    assert main(["atlas", str(tmp_path / "missing"), "--quiet"]) == 2


def test_classes_without_importance_or_readable_images(tmp_path):
    """No importance file: concepts ranked by coefficient mass; no readable image: no picture, no crash."""
    from atlas_fakerun import write_class

    run = tmp_path / "run"
    truth = write_class(run, "solo", "one image", 2, n_images=1, r=3, methods=(), seed=5)
    (run / "importance" / "solo.h5").unlink()
    write_class(run, "blind", "nothing readable", 3, n_images=2, r=3, methods=(), skipped=(0, 1), seed=6)
    (run / "importance" / "blind.h5").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        site = build_atlas(run, top_k=2, sheets=False, out=tmp_path / "site", progress=False).parent
    page = parse(site / "classes" / "solo.html")
    assert page.find("strong", cls="method").text == "coefficient mass"
    mass = np.abs(truth["coefficients"]).sum(axis=0)
    assert [int(c.attrs["data-concept"]) for c in _cards(page)] == np.argsort(-mass, kind="stable").tolist()
    shares = [float(c.attrs["data-share"]) for c in _cards(page)]
    assert sum(shares) == pytest.approx(1.0, abs=1e-6)
    point = page.find("svg", cls="embedding").find("circle")  # coloured by its mean coefficient's top concept
    mean = truth["coefficients"].mean(axis=0)
    assert "concept %d " % int(np.argmax(mean)) in point.text
    blind = parse(site / "classes" / "blind.html")
    assert not blind.find_all("img") and len(_cards(blind)) == 3
    card = [c for c in parse(site / "index.html").find_all("li", cls="class-card") if c.attrs["data-id"] == "blind"][0]
    assert card.find("span", cls="n-images").text == "0" and not card.find_all("img")


def test_a_folder_that_is_not_an_atlas_is_never_replaced(fake_run, tmp_path):
    run, _ = fake_run
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(ConceptsError, match="not an atlas"):
        build_atlas(run, classes=["n01440764"], sheets=False, out=precious, progress=False)
    assert (precious / "thesis.tex").read_text() == "do not delete"
    assert not (tmp_path / "documents.tmp").exists()
