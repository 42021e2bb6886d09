"""A tiny HTML tree (stdlib html.parser) for checking atlas pages without a browser."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list["Element"] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.texts) + "".join(child.text for child in self.children)

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list["Element"]:
        out = []
        for el in self.iter():
            if tag and el.tag != tag:
                continue
            if cls and cls not in el.attrs.get("class", "").split():
                continue
            if any(el.attrs.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            out.append(el)
        return out

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> "Element":
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}>"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        el = Element(tag, {k: (v if v is not None else "") for k, v in attrs})
        self.stack[-1].children.append(el)
        if tag not in VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, {k: (v or "") for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].texts.append(data)


def rendered_html(path: str | Path) -> str:
    """A page's HTML as the browser shows it: a concept page's placeholder replaced by its content from the class's
    ``concepts.js`` (what static/conceptpage.js does; test_atlas_pages checks the browser's DOM is the same)."""
    path = Path(path)
    html = path.read_text(encoding="utf-8")
    match = re.search(r'<div id="concept-page" data-k="(\d+)">.*?</div>', html)
    if match is None:
        return html
    from concepts.atlas.packed import read_data_script

    bodies = read_data_script((path.parent / "concepts.js").read_text(encoding="utf-8"), "ATLAS_CONCEPTS")
    return html[:match.start()] + bodies[match.group(1)] + html[match.end():]


def parse(path: str | Path) -> Element:
    builder = _Builder()
    builder.feed(rendered_html(path))
    builder.close()
    return builder.root


def image_data(folder: str | Path) -> dict:
    """A class's image-page data (``classes/<stem>/images.js``, what static/imagepage.js renders the pages from)."""
    from concepts.atlas.packed import read_data_script

    data = read_data_script((Path(folder) / "images.js").read_text(encoding="utf-8"), "ATLAS_IMAGES")
    colours = data["colours"]
    for image in data["images"].values():  # the compact records in full (the format: concepts/atlas/imagedata.py)
        legend = {item[0]: item for item in image["legend"]}
        image["legend"] = [[k, item[2] if len(item) > 2 else colours[str(k)], item[1]] for k, *_ in
                           image["legend"] for item in [legend[k]]]  # [concept, colour, text]
        image["maps"] = [[m[0], m[3], m[2], m[1]] if len(m) > 2 else [m[0], colours[str(m[0])], legend[m[0]][1], m[1]]
                         for m in image["maps"]]  # [concept, colour, text, canvas]
        image.setdefault("kinds", [])
        for chart in image["charts"]:  # [label, kind, concept, left, width, colour, text, href, ci]
            chart["bars"] = [[f"concept {b[0]}", "concept", b[0], b[1], b[2], colours[str(b[0])], b[3], f"c{b[0]}.html",
                              b[4] if len(b) > 4 else None] if isinstance(b[0], int) else b for b in chart["bars"]]
    return data
