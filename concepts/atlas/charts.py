"""Chart geometry for the pages, drawn with HTML and CSS (no SVG text, so labels keep their size on a phone).

A bar chart is a list of rows on one signed axis: each bar starts at zero and goes right for a positive value
and left for a negative one; a confidence interval is a whisker on the same axis. Positions are percentages of
the bar track, so the templates only place boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


#: the colours of the logit's parts that are not concepts
RESIDUAL_COLOUR, BIAS_COLOUR = "#8c8c8c", "#c7c7c7"


@dataclass
class Bar:
    label: str
    value: float
    text: str  # the value as shown
    colour: str
    left: float  # % of the track where the bar starts
    width: float  # % of the track it covers
    ci: tuple[float, float] | None = None  # (left %, width %) of the whisker
    href: str | None = None
    kind: str = "concept"  # concept | residual | bias
    concept: int | None = None
    title: str = ""


@dataclass
class BarChart:
    bars: list[Bar]
    zero: float  # % of the track where zero is
    axis: str  # what the values are
    negative: bool = False  # some bar goes left of zero


def _domain(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    finite = np.concatenate([values, low, high, [0.0]])
    finite = finite[np.isfinite(finite)]
    lo, hi = float(min(finite.min(), 0.0)), float(max(finite.max(), 0.0))
    if hi - lo <= 0:
        hi = lo + 1.0
    return lo, hi


def bar_chart(values, texts: list[str], labels: list[str], colours: list[str], *, axis: str, low=None, high=None,
              hrefs: list[str | None] | None = None, kinds: list[str] | None = None,
              concepts: list[int | None] | None = None, titles: list[str] | None = None) -> BarChart:
    """Rows of signed bars on one axis (``low``/``high``: a confidence interval per row, NaN for none)."""
    values = np.asarray(values, np.float64)
    n = len(values)
    low = np.full(n, np.nan) if low is None else np.asarray(low, np.float64)
    high = np.full(n, np.nan) if high is None else np.asarray(high, np.float64)
    lo, hi = _domain(values, low, high)

    def at(x: float) -> float:
        return round(100.0 * (x - lo) / (hi - lo), 2)

    zero = at(0.0)
    bars = []
    for i in range(n):
        v = float(values[i]) if np.isfinite(values[i]) else 0.0
        start, end = sorted((at(0.0), at(v)))
        ci = None
        if np.isfinite(low[i]) and np.isfinite(high[i]):
            a, b = sorted((at(float(low[i])), at(float(high[i]))))
            ci = (a, round(b - a, 2))
        bars.append(Bar(label=labels[i], value=v, text=texts[i], colour=colours[i], left=start,
                        width=round(end - start, 2), ci=ci, href=hrefs[i] if hrefs else None,
                        kind=kinds[i] if kinds else "concept", concept=concepts[i] if concepts else None,
                        title=titles[i] if titles else ""))
    return BarChart(bars, zero, axis, negative=bool((values < 0).any()))


@dataclass
class Histogram:
    heights: list[float]  # % of the tallest column
    counts: list[int]
    edges: list[str]  # the first and last edge, as shown
    axis: str
    zero: float | None = None  # % of the width where zero lies (None when outside)
    title: list[str] = field(default_factory=list)


def histogram(values, bins: int, axis: str, fmt) -> Histogram:
    """Columns of a histogram of ``values`` (NaN left out); ``fmt`` formats an edge."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return Histogram([], [], [], axis)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top = max(int(counts.max()), 1)
    zero = round(100 * (0 - lo) / (hi - lo), 2) if lo < 0 < hi else None
    titles = [f"{fmt(edges[i])} to {fmt(edges[i + 1])}: {int(c)} image(s)" for i, c in enumerate(counts)]
    return Histogram([round(100 * c / top, 2) for c in counts], [int(c) for c in counts], [fmt(lo), fmt(hi)],
                     axis, zero, titles)
