"""Numbers as the reader sees them, the same on pages, figures and in ``info``: one format per kind of number,
never a "-0.0%", "n/a" for what was not computed."""
from __future__ import annotations

import math


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _no_negative_zero(text: str) -> str:
    stripped = text.lstrip("-+").replace("0", "").replace(".", "").replace("%", "").strip()
    return text.lstrip("-") if not stripped else text


def pct(value, digits: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage: ``0.674 -> '67.4%'`` (``signed``: ``'+67.4%'``); 'n/a' when not finite."""
    if not _finite(value):
        return "n/a"
    text = f"{100 * float(value):{'+' if signed else ''}.{digits}f}%"
    text = _no_negative_zero(text)
    return ("+" + text.lstrip("+") if signed and not text.startswith("-") else text)


def num(value, digits: int = 3, signed: bool = False) -> str:
    """A value with ``digits`` significant digits (``signed``: always with its sign); 'n/a' when not finite."""
    if not _finite(value):
        return "n/a"
    if float(value) == 0:
        return "0"
    text = _no_negative_zero(f"{float(value):{'+' if signed else ''}.{digits}g}")
    return ("+" + text.lstrip("+") if signed and not text.startswith("-") else text)
