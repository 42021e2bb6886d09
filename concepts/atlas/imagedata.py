"""The image pages' data: one script per class, ``classes/<stem>/images.js``, from which ``static/imagepage.js``
draws the class's one image page, ``classes/<stem>/image.html?i=<n>`` (the image its query names).

An image page's markup is mostly repeated structure (its decomposition bars, its legend, its concept maps); the
numbers, names and maps it shows are a fraction of its bytes. A ``<script src>`` data file (not JSON fetched at run
time, which Chromium blocks on ``file://``) keeps the pages working offline; its JSON is deflated (``packed.py``,
read back by ``static/inflate.js``). The renderer builds the DOM with ``textContent`` only, so a class or file name
can never inject markup.

Compact records (what ``imagepage.js`` expands): a concept's colour is the class's ``colours[k]``, a concept bar
``[k, left, width, text]`` (label ``concept k``, link ``c<k>.html``) and any other bar ``[label, kind, concept,
left, width, colour, text, href, ci]``; a legend item ``[k, text]``, a map ``[k, canvas]`` (its text: the legend's);
a canvas ``[width, height, kind, colour, data]``. Anything that differs from those defaults is written in full.
"""
from __future__ import annotations

import posixpath

from ..evidence.numbers import num
from .packed import data_script


def _canvas(m) -> list | None:
    """A pictures.CanvasMap as [width, height, kind, colour, data]."""
    return None if not m else [m.width, m.height, m.kind, m.colour or "", m.data]


def _bar(b, here: str, colours: dict[int, str]) -> list:
    href = posixpath.relpath(b.href, posixpath.dirname(here)) if b.href else None
    k = b.concept
    if (k is not None and b.kind == "concept" and b.label == f"concept {k}" and href == f"c{k}.html"
            and colours.get(k) == b.colour):
        return [k, b.left, b.width, b.text] + ([list(b.ci)] if b.ci else [])
    return [b.label, b.kind, k, b.left, b.width, b.colour, b.text, href, list(b.ci) if b.ci else None]


def _chart(chart, here: str, colours: dict[int, str]) -> dict:
    return {"axis": chart.axis, "zero": chart.zero, "negative": bool(chart.negative),
            "bars": [_bar(b, here, colours) for b in chart.bars]}


def image_record(image, colours: dict[int, str]) -> dict:
    """What an image page shows, compact: links are relative to the page, the photo to the site root."""
    legend = {item["concept"]: item for item in image.legend}
    record = {"name": image.name, "path": image.path, "photo": image.photo, "logit": num(image.logit),
              "predicted": image.predicted_name,
              "correct": bool(image.correct), "overlay": _canvas(image.overlay),
              "legend": [[item["concept"], item["text"]] + ([item["colour"]]
                                                           if colours.get(item["concept"]) != item["colour"] else [])
                         for item in image.legend],
              "charts": [_chart(chart, image.page, colours) for chart in image.charts.values()],
              "maps": []}
    if image.kinds:
        record["kinds"] = list(image.kinds)
    for mp in image.maps:
        item = legend.get(mp.concept)
        same = item is not None and item["text"] == mp.text and colours.get(mp.concept) == mp.colour
        record["maps"].append([mp.concept, _canvas(mp.presence)] + ([] if same else [mp.text, mp.colour]))
    return record


def images_script(view) -> str:
    """``classes/<stem>/images.js``: every image page's data of the class ``view``."""
    colours = {c.index: c.colour for c in view.concepts}
    data = {"class_name": view.class_name, "kind": view.kind, "colours": {str(k): v for k, v in colours.items()},
            "order": [image.index for image in view.images],  # previous / next
            "images": {str(image.index): image_record(image, colours) for image in view.images}}
    return data_script("ATLAS_IMAGES", data, "concepts atlas: the data of this class's image pages (rendered by "
                       "static/imagepage.js), deflated")
