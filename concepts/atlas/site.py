"""The static atlas website: ``RUN/atlas/index.html``, one page per class, pictures, local CSS/JS.

The site has no server code and no external resource: every link is relative, so it opens from
``file://`` as well as from any static server. Templates are Jinja2 with autoescaping, so class
and file names can never inject markup.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

import jinja2
import numpy as np
from tqdm.auto import tqdm

from .._version import __version__
from ..schema import replace_folder
from ..schema.hdf5 import temporary_name
from ..schema.locks import artefact_lock
from ..errors import ConceptsError
from ..runner import say
from .analysis import similar_concepts
from ..schema.classdata import list_run_classes, load_bank, load_class
from .view import ClassView, PhotoStore, build_view

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES = PACKAGE_DIR / "templates"
STATIC = PACKAGE_DIR / "static"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "svg", "xml"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["pct"] = lambda v, digits=1: "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.{digits}f}%"
    env.filters["num"] = lambda v, digits=3: "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}g}"
    env.globals["crop_style"] = crop_style
    return env


def crop_style(box: Iterable[int], input_size: int, display: int = 112) -> dict[str, str]:
    """CSS sizes that show the ``box`` (x0, y0, x1, y1 in model-input pixels) of a full picture
    in a frame ``display`` pixels wide: the picture is scaled and shifted inside the frame."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w = max(x1 - x0, 1.0)
    h = max(y1 - y0, 1.0)
    scale = display / w
    return {
        "frame": f"width:{display}px;height:{round(h * scale)}px",
        "img": f"width:{input_size * scale:.1f}px;height:{input_size * scale:.1f}px;"
               f"left:{-x0 * scale:.1f}px;top:{-y0 * scale:.1f}px",
    }


def build_atlas(run: str | os.PathLike, *, config=None, out: str | os.PathLike | None = None,
                progress: bool = True, **settings) -> Path:
    """Build the static atlas of a run and return the path of its ``index.html``.

    Reads ``RUN/activations``, ``RUN/concepts`` and ``RUN/importance`` and writes ``RUN/atlas/``
    (or ``out``): ``index.html`` (every class, filterable and sortable), ``classes/<stem>.html``
    (concept cards sorted by importance with top-``top_k`` crops and heatmaps, an importance
    bar chart, ``n_examples`` images with the maps of the ``n_overlay`` most important
    concepts, an embedding of the images by their concept importances and, for each concept,
    the ``n_similar`` most similar concepts of other classes), each photo once as a
    ``thumb_size`` JPEG/WebP, and (``sheets``) one PNG sheet per class in ``sheets/``.
    The folder is built aside and swapped in at the end, so a failed build leaves the old one.
    ``settings``: keywords of the ``atlas`` section (:class:`~concepts.settings.AtlasSettings`) and ``classes``.
    """
    from ..settings import stage_config

    cfg = stage_config("atlas", config, **settings)
    classes = list(cfg.data.classes) if cfg.data.classes else None
    run = Path(run)
    if not run.is_dir():
        raise ConceptsError(f"run folder {run} does not exist")
    found = list_run_classes(run, classes=classes)
    if not found:
        raise ConceptsError(f"{run} has no class with both activations and concepts; "
                            "run `concepts extract` and `concepts factorize` first")
    site = Path(out) if out is not None else run / "atlas"
    if site.exists() and any(site.iterdir()) and not (site / "static" / "atlas.js").exists():
        raise ConceptsError(f"{site} exists and is not an atlas; choose an empty or new folder for the atlas")
    with artefact_lock(site, say=lambda m: say(m, progress)):  # one writer of the site at a time
        work = temporary_name(site)
        try:
            missing = _write_site(run, found, work, cfg.atlas, progress)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if missing:
            say(f"warning: atlas: {len(missing)} photo(s) not found or unreadable (shown in grey), e.g. "
                f"{missing[0]}", progress)
        return replace_folder(work, site) / "index.html"


def _write_site(run: Path, found: list[tuple[str, str]], work: Path, a, progress: bool) -> list[str]:
    """Write the whole site into ``work``; returns the photos that could not be shown."""
    (work / "classes").mkdir(parents=True)
    shutil.copytree(STATIC, work / "static")
    # pass 1: the concept banks of every class, for the cross-class similarities
    meta: list[tuple[str, str, str]] = []
    banks: list[np.ndarray] = []
    for class_id, stem in found:
        cid, name, bank = load_bank(run, class_id)
        meta.append((cid, name, stem))
        banks.append(bank)
    neighbours = similar_concepts(banks, k=a.n_similar)
    env = _environment()
    class_template = env.get_template("class.html")
    views: list[ClassView] = []
    missing: list[str] = []
    for pos, (class_id, stem) in enumerate(tqdm(found, desc="atlas", unit="class", disable=not progress)):
        data = load_class(run, class_id)
        store = PhotoStore(run, data, work, thumb_size=a.thumb_size, image_format=a.image_format)
        view = build_view(data, store, top_k=a.top_k, n_examples=a.n_examples, n_overlay=a.n_overlay,
                          neighbours=neighbours[pos], others=meta)
        html = class_template.render(view=view, root="../", version=__version__, has_sheet=a.sheets,
                                     title=f"{view.class_name} - concept atlas")
        (work / "classes" / f"{stem}.html").write_text(html, encoding="utf-8")
        if a.sheets:
            from .sheets import render_sheet

            (work / "sheets").mkdir(exist_ok=True)
            render_sheet(view, store, work / "sheets" / f"{stem}.png")
        missing += store.missing
        views.append(view)
    index = env.get_template("index.html").render(
        views=views, root="", version=__version__, run_name=run.resolve().name,
        title=f"{run.resolve().name} - concept atlas",
        model=views[0].model if views else "?", layer=views[0].layer if views else "?")
    (work / "index.html").write_text(index, encoding="utf-8")
    return missing
