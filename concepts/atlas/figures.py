"""Figures for papers (matplotlib), per class, from the same views as the pages: every concept, fonts of at least
7 pt at the printed width, each as SVG, PDF and a 300-dpi PNG.

* ``importance`` (column width, 3.4 in): each concept's value by the class's method with its 95% interval,
  negative values left of the axis, and the residual and bias when the values are shares of the logit;
* ``crops`` (text width, 7 in): CRAFT's figure, one row per concept (most important first) with its top crops cut
  from the original photos and its value;
* ``image_<n>`` (column width): CRAFT's per-image figure for the image the model is most sure of (and the first it
  gets wrong): the photo with its concept maps, what each concept adds to its logit, one map per top concept.

A PNG sheet (``sheets/<stem>.png``) is the crops figure at 150 dpi.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..text import plural

COLUMN, TEXT = 3.4, 7.0  # printed widths, inches
MIN_FONT = 7.0  # points
FORMATS = ("svg", "pdf", "png")


def _rc():
    import matplotlib

    return matplotlib.rc_context({"font.size": 7.5, "axes.titlesize": 8, "axes.labelsize": 7.5,
                                  "xtick.labelsize": 7, "ytick.labelsize": 7, "pdf.fonttype": 42,
                                  "svg.fonttype": "path", "axes.spines.top": False, "axes.spines.right": False})


def _plain(text: str) -> str:
    """Text drawn as is: a ``$`` would start matplotlib's mathtext (and fail on odd names)."""
    return str(text).replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def importance_figure(view):
    """Bars of every concept by the class's method (with the residual and bias of the logit when shown)."""
    chart = view.methods[view.method].chart
    bars = chart.bars
    with _rc():
        fig = _figure(COLUMN, 0.55 + 0.17 * len(bars))
        ax = fig.add_subplot()
        y = np.arange(len(bars))
        values = np.array([100 * b.value for b in bars])
        ax.barh(y, values, color=[b.colour for b in bars], height=0.7)
        mv = view.methods[view.method]
        for i, k in enumerate(b.concept for b in bars):
            if k is None:
                continue
            v = view.by_index[k].values[view.method]
            if np.isfinite(v.low) and np.isfinite(v.high):
                ax.errorbar(100 * v.value, i, xerr=[[100 * max(v.value - v.low, 0.0)], [100 * max(v.high - v.value, 0.0)]],
                            fmt="none", ecolor="black", elinewidth=0.6, capsize=1.5)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_yticks(y, [_plain(b.label) for b in bars])
        ax.invert_yaxis()
        ax.set_xlabel(f"{mv.axis} (%), {mv.label}")
        explained = view.diagnostics.explained_share
        extra = f", concepts explain {100 * explained:.1f}% of the logit" if np.isfinite(explained) else ""
        ax.set_title(_plain(f"{view.class_name}: {plural(view.n_concepts, 'concept')}, {plural(view.n_images, 'image')}{extra}"))
    return fig


def _mosaic(tiles: list, n: int, tile: int, gap: int) -> np.ndarray:
    """Crops resized to ``tile`` pixels side by side on a white strip with room for ``n`` of them."""
    from PIL import Image

    strip = np.ones((tile, n * tile + (n - 1) * gap, 3), np.float32)
    for j, picture in enumerate(tiles[:n]):
        scale = tile / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.LANCZOS)
        arr = np.asarray(picture.convert("RGB"), np.float32) / 255.0
        x = j * (tile + gap)
        strip[:arr.shape[0], x:x + arr.shape[1]] = arr
    return strip


def crops_figure(view, store, dpi: int = 300):
    """CRAFT's crop figure: one row per concept with its top crops from the original photos."""
    concepts = view.concepts
    n = max([len(c.crops) for c in concepts] + [1])
    mv = view.methods[view.method]
    tile = min(int(round((TEXT - 1.25) / n * dpi)), 240)  # pixels per crop: crops are rarely sharper than this
    with _rc():
        fig = _figure(TEXT, 0.35 + 0.62 * len(concepts) * min(1.0, 10 / n))
        grid = fig.add_gridspec(len(concepts), 2, width_ratios=[0.85, TEXT - 0.85])
        for row, c in enumerate(concepts):
            label = fig.add_subplot(grid[row, 0])
            label.axis("off")
            label.text(0.0, 0.5, f"concept {c.index}\n{_plain(_value_text(c, view))}", fontsize=7.5,
                       va="center", ha="left", transform=label.transAxes,
                       bbox={"facecolor": c.colour, "alpha": 0.3, "edgecolor": "none", "pad": 2})
            ax = fig.add_subplot(grid[row, 1])
            ax.axis("off")
            tiles = [store.crop_pixels(cr.image, cr.box) for cr in c.crops]
            if tiles:
                ax.imshow(_mosaic(tiles, n, tile, max(2, tile // 20)), interpolation="none")
            ax.set_anchor("W")
        fig.suptitle(_plain(f"{view.class_name}: top crops of every concept, ranked by {mv.label} ({mv.axis})"),
                     fontsize=8)
    return fig


def _value_text(c, view) -> str:
    from ..evidence.numbers import pct

    return pct(c.values[view.method].value)


def _photo_with_maps(ax, store, image, top, colours) -> None:
    from .images import composite_overlay

    photo = store.view(image.index).astype(np.float32) / 255.0
    heats = [store.presence(image.index, k, own_scale=False) for k in top]
    if heats and heats[0] is not None:
        photo = _blend(photo, composite_overlay(np.stack(heats), colours, photo.shape[0]))
    ax.imshow(photo)
    ax.set_axis_off()


def _decomposition_bars(ax, chart, logit_units: bool) -> None:
    y = np.arange(len(chart.bars))
    ax.barh(y, [b.value for b in chart.bars], color=[b.colour for b in chart.bars], height=0.7)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(y, [_plain(b.label) for b in chart.bars])
    ax.invert_yaxis()
    ax.set_xlabel("contribution to the logit" if logit_units else "share of the image's values")


def image_figure(view, image, store):
    """CRAFT's per-image figure: the photo with its concept maps, each concept's contribution, one map each."""
    from .images import heat_overlay

    chart = next(iter(image.charts.values()))
    top = [item["concept"] for item in image.legend]
    colours = [_rgb(item["colour"]) for item in image.legend]
    with _rc():
        fig = _figure(COLUMN, 2.3 + 0.12 * len(chart.bars))
        upper, lower = fig.subfigures(2, 1, height_ratios=[1.6 + 0.12 * len(chart.bars), 0.9])
        left, right = upper.subplots(1, 2, width_ratios=[1, 1.25])
        _photo_with_maps(left, store, image, top, colours)
        _decomposition_bars(right, chart, "logit" in chart.axis)
        verdict = "right" if image.correct else f"wrong: {image.predicted_name}"
        upper.suptitle(_plain(f"{image.name}\n{view.class_name} logit {image.logit:.2f} ({verdict})"), fontsize=7.5)
        photo = store.view(image.index).astype(np.float32) / 255.0
        for ax, k, colour in zip(np.atleast_1d(lower.subplots(1, max(len(top), 1))), top, colours):
            heat = store.presence(image.index, k)
            ax.imshow(photo if heat is None else _blend(photo, heat_overlay(heat, colour, photo.shape[0])))
            ax.set_title(f"concept {k}", fontsize=7)
        for ax in lower.axes:
            ax.set_axis_off()
    return fig


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def _blend(view: np.ndarray, overlay) -> np.ndarray:
    rgba = np.asarray(overlay, np.float32) / 255.0
    return np.clip(view * (1 - rgba[..., 3:]) + rgba[..., :3] * rgba[..., 3:], 0, 1)


def save(fig, base: Path, formats=FORMATS, dpi: int = 300) -> list[Path]:
    """``base.svg``, ``base.pdf`` and ``base.png`` (``dpi``) of ``fig``."""
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        path = base.with_suffix(f".{fmt}")
        with _rc():
            fig.savefig(path, format=fmt, dpi=dpi, **({"pil_kwargs": {"compress_level": 6}} if fmt == "png" else {}))
        out.append(path)
    return out


def class_figures(view, store) -> dict[str, object]:
    """The figures of a class by name (``importance``, ``crops``, ``image_<n>``)."""
    figures = {"importance": importance_figure(view), "crops": crops_figure(view, store)}
    shown = [view.examples.get("most sure", [])[:1], view.examples.get("wrong", [])[:1]]
    for image in [im for group in shown for im in group]:
        figures[f"image_{image.index}"] = image_figure(view, image, store)
    return figures


def write_class_figures(view, store, site: Path, *, figures: bool = True, sheet: bool = False) -> list[str]:
    """Write the figures of a class under ``site/figures/<stem>/`` (and its sheet under ``site/sheets``); returns
    the files written, relative to ``site``."""
    written: list[Path] = []
    if figures:
        for name, fig in class_figures(view, store).items():
            written += save(fig, site / "figures" / view.stem / name)
    if sheet:
        written += save(crops_figure(view, store, dpi=150), site / "sheets" / view.stem, ("png",), dpi=150)
    return [p.relative_to(site).as_posix() for p in written]
