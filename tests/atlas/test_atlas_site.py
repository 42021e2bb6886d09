"""Structure of the atlas website, checked by parsing the HTML (no browser needed)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from atlas_fakerun import EVIL_NAME, default_method, shown_order, shown_values
from atlas_html import image_data, parse, rendered_html
from concepts.atlas import build_atlas, write_figures, write_sheets
from concepts.atlas.analysis import n_important, top_rows
from concepts.errors import ConceptsError
from concepts.evidence.crops import display_box, input_box_to_original
from concepts.evidence.numbers import pct
from concepts.schema import safe_filename

TOP_K = 4  # as in the fake_atlas fixture


def _cards(page):
    return page.find_all("article", cls="concept-card")


def _class_page(site: Path, class_id: str):
    return parse(site / "classes" / f"{safe_filename(class_id)}.html")


def test_index_lists_every_class_with_its_numbers(any_atlas):
    site, truth = any_atlas
    index = parse(site / "index.html")
    cards = index.find_all("li", cls="class-card")
    assert len(cards) == len(truth)
    by_id = {card.attrs["data-id"]: card for card in cards}
    for class_id, t in truth.items():
        card = by_id[class_id.lower()]
        link = card.find("a", cls="class-link")
        assert link.attrs["href"] == f"classes/{safe_filename(class_id)}.html" and (site / link.attrs["href"]).is_file()
        assert card.find("span", cls="n-images").text == str(int((~t["skipped"]).sum()))
        values = shown_values(t, default_method(t["methods"]))
        assert card.find("span", cls="n-important").text == str(n_important(values))
        assert (site / card.find("img", cls="thumb").attrs["src"]).is_file()
        p = np.clip(values, 0, None) / np.clip(values, 0, None).sum()
        assert float(card.attrs["data-concentration"]) == pytest.approx(float((p ** 2).sum()), abs=1e-5)
    assert index.find("input", id="filter") and index.find("select", id="sort")


def _pages(site: Path) -> list[Path]:
    return [site / "index.html", *sorted((site / "classes").rglob("*.html"))]


def test_every_reference_is_local_relative_and_exists(any_atlas):
    site, truth = any_atlas
    pages = _pages(site)
    n_concepts = sum(len(t["components"]) for t in truth.values())
    assert len([p for p in pages if re.fullmatch(r"c\d+\.html", p.name)]) == n_concepts
    checked = 0
    for page_path in pages:
        page = parse(page_path)
        for el in page.iter():
            for attr in ("src", "href"):
                ref = el.attrs.get(attr)
                if ref is None:
                    continue
                parts = urlsplit(ref)
                assert not parts.scheme and not parts.netloc, f"external reference {ref} in {page_path.name}"
                assert not ref.startswith("/"), f"absolute path {ref}"
                target = page_path if not parts.path else (page_path.parent / unquote(parts.path)).resolve()
                assert target.is_file(), f"{page_path}: {attr}={ref} does not exist"
                assert site.resolve() in target.parents or target == page_path
                if parts.fragment:
                    assert parse(target).find_all(id=parts.fragment), f"{ref}: no element with that id"
                if parts.path and target.name == "image.html":  # the class's image page draws the image its query names
                    assert re.fullmatch(r"i=\d+", parts.query)
                    assert parts.query[2:] in image_data(target.parent)["images"]
                else:
                    assert not parts.query, ref
                checked += 1
    for folder in sorted(p for p in (site / "classes").iterdir() if p.is_dir()):  # what the stubs render
        data = image_data(folder)
        assert (folder / "image.html").is_file() and not list(folder.glob("i[0-9]*.html"))  # one image page
        assert data["order"] == sorted(int(n) for n in data["images"])  # previous / next: in image order
        for n, image in data["images"].items():
            assert not image["photo"].startswith("/") and (site / image["photo"]).is_file()
            links = [b[7] for chart in image["charts"] for b in chart["bars"] if b[7]]
            links += [f"c{k}.html" for k, *_ in image["legend"] + image["maps"]]
            assert links and all((folder / link).is_file() for link in links), (folder, n)
            checked += 1 + len(links)
    assert checked > 200
    css = (site / "static" / "atlas.css").read_text()
    assert "url(" not in css and "@import" not in css


def test_the_class_page_leads_with_what_the_concepts_explain(any_atlas):
    """The explained share and the residual, as the importance file's fidelity attributes give them."""
    site, truth = any_atlas
    for class_id, t in truth.items():
        page = _class_page(site, class_id)
        section = page.find("section", id="explained")
        fid = t["fidelity"]
        gradient = t["methods"].get("gradient")
        if not gradient or "reconstruction_logit_original" not in fid:
            continue
        original, recon = fid["reconstruction_logit_original"], fid["reconstruction_logit_reconstructed"]
        concepts = float(np.sum(np.asarray(gradient["class_importance"], np.float64)))
        shown = section.find("strong", id="explained-share")
        assert float(shown.attrs["data-value"]) == pytest.approx(concepts / original, rel=1e-6)
        assert shown.text == pct(concepts / original)
        residual = section.find("span", id="residual-share")
        assert float(residual.attrs["data-value"]) == pytest.approx((original - recon) / original, rel=1e-6)
        rows = {r.find("span", cls="l").text: r.find("b").text for r in section.find_all("div", cls="r")}
        assert rows["residual"] == pct((original - recon) / original)
        assert rows["bias"] == pct((recon - concepts) / original)
        terms = section.find("dl", cls="diagnostics").text
        for words in ("Reconstruction error", "Convergence", "Logit correlation", "how much of the model's score"):
            assert words in terms
        assert "C-Deletion" in section.text and "lower is better" in section.text


def test_concept_cards_follow_the_default_method_and_carry_every_ranking(any_atlas):
    site, truth = any_atlas
    for class_id, t in truth.items():
        method = default_method(t["methods"])
        values = shown_values(t, method)
        cards = _cards(_class_page(site, class_id))
        assert [int(c.attrs["data-concept"]) for c in cards] == shown_order(t, method)
        np.testing.assert_allclose([float(c.attrs["data-share"]) for c in cards], values[shown_order(t, method)],
                                   atol=1e-7)
        for other in t["methods"]:
            ranks = {int(c.attrs["data-concept"]): int(c.attrs[f"data-rank-{other}"]) for c in cards}
            assert [k for k, _ in sorted(ranks.items(), key=lambda kv: kv[1])] == shown_order(t, other)
        page = _class_page(site, class_id)
        charts = page.find_all("div", cls="method-chart")
        shown = [c for c in charts if "hidden" not in c.attrs]
        assert len(shown) == 1 and method in shown[0].attrs["data-method"].split()
        chart = shown[0]
        labels = [r.find("span", cls="l").text for r in chart.find_all("div", cls="r")]
        assert labels[:len(values)] == [f"concept {k}" for k in shown_order(t, method)]


def test_negative_contributions_are_drawn_left_of_the_axis(real_atlas):
    folder = sorted(p for p in (real_atlas / "classes").iterdir() if p.is_dir())[0]
    images = image_data(folder)["images"]  # the image pages' bars, as static/imagepage.js draws them
    for n in sorted(images, key=int)[:6]:
        chart = images[n]["charts"][0]
        zero = chart["zero"]
        for _, _, _, left, width, _, text, _, _ in chart["bars"]:
            if text.startswith("-"):
                assert left + width == pytest.approx(zero, abs=0.02)
            elif width > 0:
                assert left == pytest.approx(zero, abs=0.02)


def test_coinciding_methods_are_said_to_be_one(real_atlas, fake_atlas):
    real = parse(next((real_atlas / "classes").glob("*.html")))
    notes = real.find_all("p", cls="same-method")
    assert notes and "coincide by construction" in notes[0].text
    option = real.find("option", value="occlusion")
    assert "(= gradient x input here)" in option.text
    # different numbers (the fabricated run): listed as methods of their own
    fake = _class_page(fake_atlas, "n01440764")
    assert not fake.find_all("p", cls="same-method")


def test_crops_are_cut_from_the_originals_at_their_resolution(any_atlas):
    site, truth = any_atlas
    for class_id, t in truth.items():
        for card in _cards(_class_page(site, class_id)):
            k = int(card.attrs["data-concept"])
            coef = np.where(t["skipped"][t["row_image"]][:, None], -np.inf, t["coefficients"])
            expected = [int(r) for r in top_rows(coef, k, TOP_K, t["row_image"])]
            crops = card.find_all("figure", cls="crop")
            assert [int(re.search(r"/r(\d+)\.webp$", c.find("img").attrs["src"]).group(1)) for c in crops] == expected
            for figure, row in zip(crops[:2], expected):
                image = int(t["row_image"][row])
                name = Path(t["paths"][image]).name
                link = figure.find("a")
                assert link.attrs["href"] == f"{safe_filename(class_id)}/image.html?i={image}"
                assert name in link.attrs["title"]
                assert name in figure.find("img").attrs["alt"] and name in figure.find("figcaption").text
                assert f"{t['coefficients'][row, k]:.3g}" in figure.find("figcaption").find("b").text
                _check_crop_pixels(site / "classes" / figure.find("img").attrs["src"], t, row, image)


def _check_crop_pixels(path: Path, t: dict, row: int, image: int) -> None:
    original = Path(t["paths"][image])
    if not original.exists():
        return
    with Image.open(original) as photo, Image.open(path) as crop:
        assert crop.format == "WEBP"
        box = input_box_to_original(display_box(t["row_box"][row], 224, 64), photo.width, photo.height,
                                    {"input_size": 224, "crop_pct": 0.875})
        photo = photo.convert("RGB")
        native = photo.crop(box)
        assert max(crop.size) <= min(max(native.size), 2 * 112)  # never upscaled, at most 2x its display
        shown = np.asarray(crop.convert("RGB"), np.float32)

        def error(b):
            return np.abs(shown - np.asarray(photo.crop(b).resize(crop.size, Image.LANCZOS), np.float32)).mean()

        x0, y0, x1, y1 = box
        shifted = (x0 + 12, y0 + 12, x1 + 12, y1 + 12) if x1 + 12 <= photo.width and y1 + 12 <= photo.height \
            else (x0 - 12, y0 - 12, x1 - 12, y1 - 12)
        assert error(box) < 12.0 and error(box) < 0.6 * error(shifted)  # this box of the original, WebP aside


def test_skipped_images_are_never_shown(fake_atlas, fake_run):
    _, truth = fake_run
    skipped = int(np.flatnonzero(truth["n02102040"]["skipped"])[0])
    html = (fake_atlas / "classes" / "n02102040.html").read_text()
    assert f"?i={skipped}\"" not in html
    assert str(skipped) not in image_data(fake_atlas / "classes" / "n02102040")["images"]
    assert not (fake_atlas / "img" / "n02102040" / f"p{skipped}.webp").exists()


def test_similar_concepts_link_to_the_planted_twin_with_its_importance(fake_atlas, fake_run):
    _, truth = fake_run
    card = _class_page(fake_atlas, "n01440764").find("article", id="c0")
    other = card.find("div", cls="similar")
    links = other.find_all("a", cls="similar-link")
    assert links[0].attrs["href"] == "n02102040/c0.html" and "English springer" in links[0].text
    assert len(links) == 3 and all("n01440764" not in a.attrs["href"] for a in links)
    twin = truth["n02102040"]
    value = [v for v in other.find("li").find_all("span", cls="value") if "hidden" not in v.attrs][0].text
    assert value.startswith(pct(shown_values(twin, "gradient")[0]))
    back = _class_page(fake_atlas, "n02102040").find("article", id="c0")
    assert back.find_all("a", cls="similar-link")[0].attrs["href"] == "n01440764/c0.html"


def test_markup_in_class_names_is_shown_as_text(fake_atlas):
    stem = safe_filename("n99<evil>")
    for page_path in _pages(fake_atlas):
        html = rendered_html(page_path)  # a concept page with its content (from concepts.js)
        assert "<script>window" not in html and "<evil>" not in html
        scripts = [s.attrs.get("src", "inline") for s in parse(page_path).find_all("script")]
        root = "../" * (len(page_path.relative_to(fake_atlas).parts) - 1)
        data = {"image.html": ["images.js", f"{root}static/inflate.js", f"{root}static/imagepage.js"]}.get(
            page_path.name, [])
        if page_path.parent.name != "classes" and page_path.name.startswith("c"):  # a concept page
            data = ["concepts.js", f"{root}static/inflate.js", f"{root}static/conceptpage.js"]
        assert scripts == ["inline", *data, f"{root}static/classes.js", f"{root}static/atlas.js"]
    assert image_data(fake_atlas / "classes" / stem)["class_name"] == EVIL_NAME  # data, rendered as text:
    assert "innerHTML" not in (fake_atlas / "static" / "imagepage.js").read_text()  # textContent only
    assert parse(fake_atlas / "classes" / f"{stem}.html").find("h1", cls="class-title").text == EVIL_NAME
    card = [c for c in parse(fake_atlas / "index.html").find_all("li", cls="class-card")
            if c.attrs["data-id"] == "n99<evil>"][0]
    assert card.find("span", cls="class-name").text == EVIL_NAME and card.attrs["data-name"] == EVIL_NAME.lower()


def test_images_most_sure_wrong_and_least_sure(any_atlas):
    site, truth = any_atlas
    for class_id, t in truth.items():
        page = _class_page(site, class_id)
        kept = np.flatnonzero(~t["skipped"])
        logit = np.where(t["skipped"], -np.inf, t["logit"])
        by_logit = np.argsort(-logit, kind="stable")[:len(kept)]
        groups = {g.attrs["data-kind"]: [int(f.attrs["data-image"]) for f in g.find_all("figure", cls="example")]
                  for g in page.find_all("div", cls="examples")}
        assert groups["most sure"] == by_logit[:4].tolist()
        for image in groups.get("wrong", []):
            assert "predicted" in page.find("figure", data_image=str(image)).text
        for group in groups.values():
            for image in group:
                assert str(image) in image_data(site / "classes" / safe_filename(class_id))["images"]
        dots = page.find("svg", cls="embedding").find_all("a", cls="dot")
        assert len(dots) >= len(kept)
        for dot in dots:  # classes/<stem>/image.html?i=<n>, an image of the page's data
            path, _, query = dot.attrs["href"].partition("?")
            target = site / "classes" / path
            assert target.name == "image.html" and query[2:] in image_data(target.parent)["images"]


def test_image_pages_decompose_the_logit(real_atlas):
    """CRAFT's per-image figure: with the residual and the bias, the bars add up to the image's logit."""
    folder = sorted(p for p in (real_atlas / "classes").iterdir() if p.is_dir())[0]
    n, image = sorted(image_data(folder)["images"].items(), key=lambda item: int(item[0]))[0]
    assert parse(folder / "image.html").find("div", id="image-page")
    logit = float(image["logit"])
    rows = image["charts"][0]["bars"]  # [label, kind, concept, left, width, colour, text, href, ci]
    values = [float(r[6]) for r in rows]
    assert [r[0] for r in rows][-2:] == ["residual", "bias"]
    assert sum(values) == pytest.approx(logit, abs=0.02 * len(values) + 0.01)
    assert image["predicted"]
    assert len(image["maps"]) == 5 and all(m[3] for m in image["maps"]) and image["overlay"]


def test_pictures_are_shared_small_and_written_once(any_atlas):
    site, _ = any_atlas
    for class_dir in (site / "img").iterdir():
        html = "".join(p.read_text() for p in (site / "classes").glob(f"{class_dir.name}*.html"))
        html += "".join(rendered_html(p) for p in (site / "classes" / class_dir.name).glob("*.html"))
        refs = set(re.findall(rf'src="(?:\.\./)+(img/{re.escape(class_dir.name)}/[^"]+)"', html))
        data = site / "classes" / class_dir.name / "images.js"
        if data.exists():  # the image pages' photos (rendered from images.js)
            refs |= {image["photo"] for image in image_data(data.parent)["images"].values()}
        assert refs == {p.relative_to(site).as_posix() for p in class_dir.iterdir()}  # every file used, none twice
        for path in class_dir.glob("p*.webp"):
            with Image.open(path) as picture:
                assert picture.format == "WEBP" and max(picture.size) <= 192
    assert not list(site.rglob("*.png"))  # maps are inline: no picture file for them


def test_missing_photo_is_a_grey_placeholder(fake_run, tmp_path, capsys):
    run, truth = fake_run
    build_atlas(run, classes=["n99<evil>"], top_k=6, out=tmp_path / "site", progress=False)
    assert "1 photo(s) not found or unreadable (shown in grey)" in capsys.readouterr().err
    lost = len(truth["n99<evil>"]["paths"]) - 1
    with Image.open(tmp_path / "site" / "img" / safe_filename("n99<evil>") / f"p{lost}.webp") as picture:
        pix = np.asarray(picture.convert("RGB")).astype(int)
    assert abs(pix - 200).max() <= 3


def test_the_method_setting_orders_the_pages(fake_run, tmp_path):
    run, truth = fake_run
    site = build_atlas(run, classes=["n01440764"], method="sobol", out=tmp_path / "site", progress=False).parent
    cards = _cards(_class_page(site, "n01440764"))
    assert [int(c.attrs["data-concept"]) for c in cards] == shown_order(truth["n01440764"], "sobol")
    assert _class_page(site, "n01440764").find("strong", cls="method").text == "Sobol total index"


def test_the_visualisation_slot_shows_an_image_when_a_stage_provides_it(fake_run, tmp_path):
    """Issue 14's slot: a ConceptView with a visualisation shows it on the class card and the concept page."""
    from concepts.atlas.classpage import ClassContext, build_class_view
    from concepts.atlas.pictures import PhotoStore
    from concepts.atlas.render import Pages
    from concepts.atlas.runindex import RunIndex
    from concepts.atlas.views import Visualisation
    from concepts.schema.classdata import load_class
    from concepts.settings import AtlasSettings

    run, _ = fake_run
    found = [("n01440764", "n01440764")]
    data = load_class(run, "n01440764")
    settings = AtlasSettings()
    view = build_class_view(data, ClassContext(RunIndex(run, found, 3), 0, settings,
                                               PhotoStore(run, data, None), write=False))
    view.concepts[0].visualisation = Visualisation("img/viz/c0.png", "img/viz/c0_alpha.png", "MACO")
    Pages(tmp_path, settings, "atlas").class_pages(view)
    for page in (tmp_path / view.page, tmp_path / view.concepts[0].page):
        figure = parse(page).find("figure", cls="visualisation")
        assert figure.find("img").attrs["src"].endswith("img/viz/c0.png") and "MACO" in figure.text
        assert figure.find("img", cls="transparency").attrs["src"].endswith("img/viz/c0_alpha.png")
    assert not parse(tmp_path / view.concepts[1].page).find_all("figure", cls="visualisation")


def test_figures_for_papers(fake_run, tmp_path):
    """Every concept, SVG + PDF + 300-dpi PNG, no text under 7 pt at the printed width."""
    import matplotlib.text

    from concepts.atlas.figures import MIN_FONT, class_figures
    from concepts.atlas.sheets import _views

    run, truth = fake_run
    paths = write_figures(run, classes=["n01440764"], out=tmp_path, progress=False)
    names = {p.name for p in paths}
    assert {"importance.svg", "importance.pdf", "importance.png", "crops.svg", "crops.pdf", "crops.png"} <= names
    assert any(n.startswith("image_") and n.endswith(".pdf") for n in names)
    with Image.open(tmp_path / "figures" / "n01440764" / "crops.png") as png:
        assert round(png.info["dpi"][0]) == 300 and png.size[0] == 2100  # 7 in at 300 dpi
    assert (tmp_path / "figures" / "n01440764" / "crops.pdf").read_bytes()[:4] == b"%PDF"
    view, store = next(_views(run, None, False, {"classes": ["n01440764"]}))
    for name, fig in class_figures(view, store).items():
        fig.canvas.draw()
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        assert texts and min(t.get_fontsize() for t in texts) >= MIN_FONT, name
        if name == "crops":
            labels = " ".join(t.get_text() for t in texts)
            assert all(f"concept {k}\n" in labels for k in range(len(truth["n01440764"]["components"])))


def test_rebuild_replaces_the_previous_site_and_unknown_classes_fail(fake_run, tmp_path):
    run, _ = fake_run
    site = tmp_path / "site"
    build_atlas(run, classes=["n01440764"], top_k=1, n_examples=1, out=site, progress=False)
    assert (site / "classes" / "n01440764.html").exists()
    build_atlas(run, classes=["n02102040"], top_k=1, n_examples=1, out=site, progress=False)
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
        code = main(["atlas", str(run), "--out", str(tmp_path / "a"), "--quiet", "--top-k", "2", "--method",
                     "occlusion", "--classes", "n01440764,n02102040", "--no-alignment"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "a" / "classes").glob("*.html")) == ["n01440764.html",
                                                                                   "n02102040.html"]
    assert not (tmp_path / "a" / "sheets").exists() and not (tmp_path / "a" / "figures").exists()
    page = parse(tmp_path / "a" / "classes" / "n01440764.html")
    assert page.find("strong", cls="method").text == "occlusion"
    assert all(len(c.find_all("figure", cls="crop")) <= 2 for c in _cards(page))
    assert main(["atlas", str(tmp_path / "missing"), "--quiet"]) == 2
    assert main(["atlas", str(run), "--quiet", "--method", "lime"]) == 2


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
        site = build_atlas(run, top_k=2, out=tmp_path / "site", progress=False).parent
    page = parse(site / "classes" / "solo.html")
    assert page.find("strong", cls="method").text == "coefficient mass"
    assert "not recorded" in page.find("section", id="explained").text
    mass = np.abs(truth["coefficients"]).sum(axis=0)
    assert [int(c.attrs["data-concept"]) for c in _cards(page)] == np.argsort(-mass, kind="stable").tolist()
    assert sum(float(c.attrs["data-share"]) for c in _cards(page)) == pytest.approx(1.0, abs=1e-6)
    point = page.find("svg", cls="embedding").find("circle")  # coloured by its mean coefficient's top concept
    assert "concept %d" % int(np.argmax(truth["coefficients"].mean(axis=0))) in point.text
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
        build_atlas(run, classes=["n01440764"], out=precious, progress=False)
    assert (precious / "thesis.tex").read_text() == "do not delete"
    assert not (tmp_path / "documents.tmp").exists()


@pytest.mark.parametrize("has_avif", [True, False])
def test_avif_pictures_or_webp_with_a_note_where_pillow_lacks_it(fake_run, tmp_path, capsys, monkeypatch, has_avif):
    """``image_format="avif"``: every photo and crop is an AVIF file (the pages link them), or, where the installed
    Pillow cannot write AVIF, WebP files and one note saying so."""
    from PIL import features

    if has_avif and not features.check("avif"):
        pytest.skip("this Pillow has no libavif")
    if not has_avif:
        real = features.check
        monkeypatch.setattr(features, "check", lambda name: False if name == "avif" else real(name))
    run, _ = fake_run
    site = build_atlas(run, classes=["n01440764"], top_k=2, image_format="avif", out=tmp_path / "site",
                       progress=False).parent
    notes = capsys.readouterr().err
    folder = site / "img" / "n01440764"
    ext, fmt = ("avif", "AVIF") if has_avif else ("webp", "WEBP")
    files = sorted(folder.iterdir())
    assert files and all(p.suffix == f".{ext}" for p in files)
    for path in files:
        with Image.open(path) as picture:
            assert picture.format == fmt
    html = rendered_html(site / "classes" / "n01440764" / "c0.html") + (site / "classes" / "n01440764.html").read_text()
    assert re.search(rf'src="[./]*img/n01440764/r\d+\.{ext}"', html)
    assert ("cannot write AVIF" in notes) == (not has_avif)
