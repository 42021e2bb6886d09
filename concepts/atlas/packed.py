"""Page data written deflated: the data files the browser draws pages from (``classes/<stem>/images.js``,
``classes/<stem>/concepts.js``) hold their JSON compressed with raw DEFLATE (RFC 1951) and base64-encoded, in a
``<script src>`` (Chromium blocks ``fetch()`` on ``file://``; a script file is not blocked).

Served over HTTP a page is compressed on the wire; opened from disk it is not, and the atlas's pages are mostly
repeated markup (a class's ten concept pages share their structure), so the files on disk are several times
larger than what they say. ``static/inflate.js`` (``atlasInflate``) turns such a string back into text,
synchronously, before the page's own script runs: the page is complete when ``load`` fires, as a static one.
"""
from __future__ import annotations

import base64
import json
import zlib
from typing import Any


def deflate_text(text: str) -> str:
    """``text`` (UTF-8) as base64 of its raw DEFLATE stream, what ``atlasInflate`` reads."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return base64.b64encode(packer.compress(text.encode("utf-8")) + packer.flush()).decode("ascii")


def inflate_text(packed: str) -> str:
    """The inverse of :func:`deflate_text`."""
    return zlib.decompress(base64.b64decode(packed), -15).decode("utf-8")


def data_script(variable: str, value: Any, comment: str) -> str:
    """A script that sets ``window.<variable>`` to ``value``'s JSON, deflated (``atlasInflate`` + ``JSON.parse``
    read it back)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return f"/* {comment} */\nwindow.{variable} = \"{deflate_text(text)}\";\n"


def read_data_script(text: str, variable: str) -> Any:
    """The value a :func:`data_script` holds (tests, tools)."""
    start = text.index(f"window.{variable} = \"") + len(f"window.{variable} = \"")
    return json.loads(inflate_text(text[start:text.index("\"", start)]))
