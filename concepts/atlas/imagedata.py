"""The image pages' data: one script per class, ``classes/<stem>/images.js``, that ``static/imagepage.js`` renders
each image page from (a page per image is then a small static stub: its title, header and heading).

An image page's markup is mostly repeated structure (its decomposition bars, its legend, its concept maps); the
numbers, names and maps it shows are a fifth of its bytes. A ``<script src>`` data file (not JSON fetched at run
time, which Chromium blocks on ``file://``) keeps the pages working offline. The renderer builds the DOM with
``textContent`` only, so a class or file name can never inject markup."""
from __future__ import annotations

import json
import posixpath

from ..evidence.numbers import num


def _canvas(m) -> list | None:
    """A pictures.CanvasMap as [width, height, kind, colour, data]."""
    return None if not m else [m.width, m.height, m.kind, m.colour or "", m.data]


def _chart(chart, here: str) -> dict:
    rows = []
    for b in chart.bars:
        rows.append([b.label, b.kind, b.concept, b.left, b.width, b.colour, b.text,
                     posixpath.relpath(b.href, posixpath.dirname(here)) if b.href else None, list(b.ci) if b.ci else None])
    return {"axis": chart.axis, "zero": chart.zero, "negative": bool(chart.negative), "bars": rows}


def image_record(image) -> dict:
    """What an image page shows, compact: links are relative to the page, the photo to the site root."""
    return {"path": image.path, "kinds": list(image.kinds), "photo": image.photo, "logit": num(image.logit),
            "predicted": image.predicted_name, "correct": bool(image.correct), "overlay": _canvas(image.overlay),
            "legend": [[item["concept"], item["colour"], item["text"]] for item in image.legend],
            "charts": [_chart(chart, image.page) for chart in image.charts.values()],
            "maps": [[mp.concept, mp.colour, mp.text, _canvas(mp.presence)] for mp in image.maps]}


def images_script(view) -> str:
    """``classes/<stem>/images.js``: every image page's data of the class ``view``."""
    data = {"class_name": view.class_name, "kind": view.kind,
            "images": {str(image.index): image_record(image) for image in view.images}}
    return ("/* concepts atlas: the data of this class's image pages (rendered by static/imagepage.js) */\n"
            "window.ATLAS_IMAGES = " + json.dumps(data, separators=(",", ":"), ensure_ascii=False) + ";\n")
