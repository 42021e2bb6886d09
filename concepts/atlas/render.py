"""The templates: one Jinja2 environment (autoescaped, so class and file names can never inject markup) and one
function per kind of page. Pages are written with every link relative (``root`` is the way back to the site
root), so the site opens from ``file://`` as well as from any static server."""
from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

import jinja2

from .._version import __version__
from ..evidence import EXPLANATIONS, METHOD_LABELS
from ..evidence.numbers import num, pct
from .imagedata import images_script
from .layout import CSS_CROP_WIDTH, crop_style
from .packed import data_script

TEMPLATES = Path(__file__).resolve().parent / "templates"


def rel(url: str, here: str) -> str:
    """``url`` (from the site root) as a link from the page ``here`` (also from the site root)."""
    path, _, fragment = url.partition("#")
    out = posixpath.relpath(path, posixpath.dirname(here) or ".") if path else ""
    return f"{out}#{fragment}" if fragment else out


def minify(html: str) -> str:
    """Runs of whitespace as one space (the pages have no <pre> or <textarea>): a third of a page's bytes."""
    return re.sub(r"\s+", " ", html)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "svg", "xml"], default_for_string=True),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["pct"] = lambda v, digits=1, signed=False: pct(v, digits, signed)
    env.filters["num"] = lambda v, digits=3, signed=False: num(v, digits, signed)
    env.globals.update(crop_style=crop_style, css_crop_width=CSS_CROP_WIDTH, explain=EXPLANATIONS,
                       method_labels=METHOD_LABELS, version=__version__, rel=rel)
    return env


class Pages:
    """Writes the pages of a site under ``site`` with one environment."""

    def __init__(self, site: Path, settings, title: str, nav=None):
        from .layers import SiteNav

        self.site, self.settings, self.title = site, settings, title
        self.nav = nav if nav is not None else SiteNav()
        self.env = environment()
        names = ("class", "concept", "concept_body", "image", "index", "dictionary", "atom")
        self._templates = {name: self.env.get_template(f"{name}.html") for name in names}

    def _render(self, url: str, name: str, **context) -> str:
        root = "../" * url.count("/")
        return minify(self._templates[name].render(root=root, here=url, settings=self.settings, nav=self.nav,
                                                   layer_links=self.nav.links(url), **context))

    def _write(self, url: str, name: str, **context) -> Path:
        path = self.site / url
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._render(url, name, **context), encoding="utf-8")
        return path

    def class_pages(self, view) -> None:
        """The class page, one page per concept (its header static, its content drawn in the browser from the
        class's ``concepts.js``) and one image page (drawn from ``images.js``)."""
        self._write(view.page, "class", view=view, title=f"{view.class_name} - {self.title}")
        bodies = {}
        for concept in view.concepts:
            self._write(concept.page, "concept", view=view, c=concept,
                        title=f"concept {concept.index} of {view.class_name} - {self.title}")
            bodies[str(concept.index)] = self._render(concept.page, "concept_body", view=view, c=concept).strip()
        if bodies:  # every concept page is in the same folder: the same relative links
            (self.site / view.concepts[0].page).with_name("concepts.js").write_text(data_script(
                "ATLAS_CONCEPTS", bodies, "concepts atlas: the content of this class's concept pages (drawn by "
                "static/conceptpage.js), deflated"), encoding="utf-8")
        if view.images:  # one page for every image, drawn in the browser from images.js
            page = view.images[0].page.partition("?")[0]
            self._write(page, "image", view=view, title=f"images of {view.class_name} - {self.title}")
            (self.site / page).with_name("images.js").write_text(images_script(view), encoding="utf-8")

    def index(self, cards: list[dict], run_name: str, model: str, layer: str) -> None:
        self._write("index.html", "index", cards=cards, run_name=run_name, model=model, layer=layer,
                    title=f"{run_name} - {self.title}")
        pages = [card["page"] for card in cards]
        (self.site / "static" / "classes.js").write_text(
            "/* every class page of this atlas, for the random-class link */\nwindow.ATLAS_CLASSES = "
            + json.dumps(pages) + ";\n", encoding="utf-8")

    def dictionary(self, view) -> None:
        """The shared dictionary's index pages and one page per atom (a dataset-scope run)."""
        n = len(view.listings)
        for pos, (url, atoms) in enumerate(view.listings):
            self._write(url, "dictionary", d=view, atoms=atoms, listing=pos + 1, n_listings=n,
                        prev_listing=view.listings[pos - 1][0] if pos else None,
                        next_listing=view.listings[pos + 1][0] if pos + 1 < n else None,
                        title=f"shared dictionary{f' ({pos + 1}/{n})' if n > 1 else ''} - {self.title}")
        for atom in view.atoms:
            self._write(atom.page, "atom", d=view, a=atom, title=f"atom {atom.index} - {self.title}")
