"""PNG atlas sheets (matplotlib): one figure per class with the content of its atlas page,
for papers and slides: the importance bars, the most important concepts with their top crops
and heatmaps, a few images with the concept maps, and the embedding of the images."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import ImageColor

from ..schema.classdata import list_run_classes, load_bank, load_class
from .images import composite_overlay, heat_overlay
from .view import ClassView, PhotoStore, build_view


def _blend(view: np.ndarray, overlay) -> np.ndarray:
    """``view`` (S, S, 3) floats in [0, 1] under an RGBA overlay of the same size."""
    rgba = np.asarray(overlay, np.float32) / 255.0
    alpha = rgba[..., 3:]
    return view * (1 - alpha) + rgba[..., :3] * alpha


def _crop_with_heat(store: PhotoStore, image: int, concept: int, box, colour: str) -> np.ndarray:
    """RGB float image of the crop ``box`` of ``image`` with the concept's heatmap blended in."""
    view = store.view(image).astype(np.float32) / 255.0
    heat = store.heat(image, concept)
    if heat is not None:
        view = _blend(view, heat_overlay(heat, ImageColor.getrgb(colour), view.shape[0], max_alpha=0.7))
    x0, y0, x1, y1 = (int(v) for v in box)
    return view[max(y0, 0):max(y1, y0 + 1), max(x0, 0):max(x1, x0 + 1)]


def _plain(text: str) -> str:
    """Text drawn as is: a ``$`` would start matplotlib's mathtext (and fail on odd names)."""
    return str(text).replace("$", r"\$")


def _mosaic(tiles: list[np.ndarray], n: int, tile: int = 128, gap: int = 8) -> np.ndarray:
    """Tiles resized to ``tile`` pixels side by side on a white strip with room for ``n`` of them:
    one image per sheet row is far cheaper to draw than one axis per crop."""
    from PIL import Image

    strip = np.ones((tile, n * tile + (n - 1) * gap, 3), np.float32)
    for j, picture in enumerate(tiles[:n]):
        img = Image.fromarray((np.clip(picture, 0, 1) * 255).astype(np.uint8))
        h, w = picture.shape[:2]
        scale = tile / max(h, w)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        arr = np.asarray(img, np.float32) / 255.0
        x = j * (tile + gap)
        strip[:arr.shape[0], x:x + arr.shape[1]] = arr
    return strip


def _composite(store: PhotoStore, example, concepts: list[int]) -> np.ndarray:
    """The example's model-input view with the same concept map as its atlas overlay."""
    view = store.view(example.image).astype(np.float32) / 255.0
    if store.data.presence is None or not concepts:
        return view
    heats = np.stack([store.heat(example.image, c) for c in concepts])
    colours = [ImageColor.getrgb(item["colour"]) for item in example.legend]
    return _blend(view, composite_overlay(heats, colours, view.shape[0]))


def render_sheet(view: ClassView, store: PhotoStore, path: str | os.PathLike, *,
                 max_concepts: int = 8, dpi: int = 100) -> Path:
    """Draw the sheet of one class to ``path`` (PNG) and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    concepts = view.concepts[:max_concepts]
    k = max([len(c.crops) for c in concepts] + [1])
    n_ex = len(view.examples)
    cols = max(k + 1, n_ex + 2, 4)
    rows = 3 + len(concepts) + (1 if n_ex or view.points else 0)
    fig = Figure(figsize=(1.4 * cols + 1.0, 1.45 * rows + 0.2), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, cols, hspace=0.45, wspace=0.08, left=0.04, right=0.98, top=0.95, bottom=0.02,
                            width_ratios=[1.7] + [1] * (cols - 1), height_ratios=[1, 1, 0.35] + [1] * (rows - 3))
    fig.suptitle(f"{_plain(view.class_name)} ({_plain(view.class_id)}) - {view.n_images} images, {view.n_concepts} concepts "
                 f"({view.factorization}), ranked by {view.method}", fontsize=11)

    bars = fig.add_subplot(grid[0:2, 1:])
    labels = [f"concept {c.index}" for c in view.concepts]
    shares = [100 * c.share for c in view.concepts]
    ypos = np.arange(len(labels))
    bars.barh(ypos, shares, color=[c.colour for c in view.concepts])
    bars.set_yticks(ypos, labels, fontsize=7)
    bars.invert_yaxis()
    bars.set_xlabel(f"share of the class importance (%), {view.method}", fontsize=8)
    bars.tick_params(axis="x", labelsize=7)
    for y, s in zip(ypos, shares):
        bars.text(max(s, 0) + 0.3, y, f"{s:.1f}%", va="center", fontsize=6)

    for r, concept in enumerate(concepts):
        label = fig.add_subplot(grid[3 + r, 0])
        label.axis("off")
        text = f"#{concept.rank} concept {concept.index}\n{100 * concept.share:.1f}% ({view.method})"
        if concept.similar:
            best = concept.similar[0]
            text += f"\n~ {_plain(best['class_name'][:18])} c{best['concept']} ({best['cosine']:.2f})"
        label.text(0.0, 0.5, text, fontsize=6.5, va="center", color="black",
                   bbox={"facecolor": concept.colour, "alpha": 0.25, "edgecolor": "none"})
        crops = [_crop_with_heat(store, crop.image, concept.index, crop.box, concept.colour)
                 for crop in concept.crops[:cols - 1]]
        if crops:
            ax = fig.add_subplot(grid[3 + r, 1:])
            ax.imshow(_mosaic(crops, cols - 1), interpolation="bilinear")
            ax.set_anchor("W")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)

    if n_ex or view.points:
        last = rows - 1
        overlay_concepts = [item["concept"] for item in view.examples[0].legend] if n_ex else []
        for j, example in enumerate(view.examples[:cols - 2]):
            ax = fig.add_subplot(grid[last, j])
            ax.imshow(np.clip(_composite(store, example, overlay_concepts), 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(_plain(example.image_name[-18:]), fontsize=5)
        if n_ex:
            legend = fig.add_subplot(grid[last, min(n_ex, cols - 2)])
            legend.axis("off")
            for i, item in enumerate(view.examples[0].legend):
                legend.text(0, 1 - 0.18 * i, f"concept {item['concept']}", fontsize=7, va="top",
                            bbox={"facecolor": item["colour"], "edgecolor": "none", "alpha": 0.8})
        if view.points:
            ax = fig.add_subplot(grid[last, cols - 1])
            ax.scatter([p["x"] for p in view.points], [p["y"] for p in view.points],
                       c=[p["colour"] for p in view.points], s=10, edgecolors="k", linewidths=0.3)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title("images by concept importance", fontsize=6)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, pil_kwargs={"compress_level": 3})
    return path


def write_sheets(run: str | os.PathLike, *, config=None, out: str | os.PathLike | None = None,
                 max_concepts: int = 8, dpi: int = 100, progress: bool = True, **settings) -> list[Path]:
    """Write one PNG sheet per class to ``out`` (default ``RUN/atlas/sheets``); returns the paths.

    ``settings``: keywords of the ``atlas`` section and ``classes``. Similar concepts across classes are computed
    over the chosen classes.
    """
    from ..settings import stage_config

    cfg = stage_config("atlas", config, **settings)
    classes = list(cfg.data.classes) if cfg.data.classes else None
    top_k, n_examples, n_overlay = cfg.atlas.top_k, cfg.atlas.n_examples, cfg.atlas.n_overlay
    from .analysis import similar_concepts
    from tqdm.auto import tqdm

    run = Path(run)
    found = list_run_classes(run, classes=classes)
    out = Path(out) if out is not None else run / "atlas" / "sheets"
    metas, banks = [], []
    for class_id, stem in found:
        cid, name, bank = load_bank(run, class_id)
        metas.append((cid, name, stem))
        banks.append(bank)
    neighbours = similar_concepts(banks)
    written = []
    for pos, (class_id, stem) in enumerate(tqdm(found, desc="sheets", unit="class", disable=not progress)):
        data = load_class(run, class_id)
        store = PhotoStore(run, data, None)
        view = build_view(data, store, top_k=top_k, n_examples=n_examples, n_overlay=n_overlay,
                          neighbours=neighbours[pos], others=metas, write=False)
        written.append(render_sheet(view, store, out / f"{stem}.png", max_concepts=max_concepts, dpi=dpi))
    return written
