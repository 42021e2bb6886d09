"""Only the figures or the PNG sheets of a run, without the website (``concepts atlas --sheets-only``)."""
from __future__ import annotations

import os
from pathlib import Path

from ..schema.classdata import list_run_classes, load_class
from .alignment import HeadLoader
from .classpage import ClassContext, build_class_view
from .figures import crops_figure, save, write_class_figures
from .pictures import PhotoStore
from .runindex import RunIndex


def _layer(run, config, settings) -> tuple[Path, str]:
    """The run folder of the one layer the figures or sheets are made for (``--layer``, default the main layer)
    and where they go in the atlas (``""``, or ``layers/<name>/`` for another layer, as in a several-layer atlas)."""
    from ..errors import ConceptsError
    from ..schema import RunFolder
    from ..schema.layout import LAYERS_FOLDER, safe_filename
    from ..settings import stage_config

    layers = stage_config("atlas", config, **settings).model.layer or ()
    if len(layers) > 1:
        raise ConceptsError("figures and sheets: one layer at a time (--layer NAME)")
    folder = RunFolder(run, layer=layers[0] if layers else None)
    prefix = "" if folder.path == folder.root else f"{LAYERS_FOLDER}/{safe_filename(layers[0])}/"
    return folder.path, prefix


def _views(run, config, progress, settings):
    """The views of the chosen classes (no file written), with their photo stores."""
    from tqdm.auto import tqdm

    from ..settings import stage_config

    cfg = stage_config("atlas", config, **settings)
    a = cfg.atlas
    run, _ = _layer(run, config, settings)
    found = list_run_classes(run, classes=list(cfg.data.classes) if cfg.data.classes else None)
    index = RunIndex(run, found, a.n_similar)
    heads = HeadLoader(enabled=False)
    for pos, (class_id, _) in enumerate(tqdm(found, desc="figures", unit="class", disable=not progress)):
        data = load_class(run, class_id)
        store = PhotoStore(run, data, None, image_format=a.image_format)
        head, reason = heads.load(data.act_attrs)
        yield build_class_view(data, ClassContext(index, pos, a, store, head, reason, write=False)), store


def write_sheets(run: str | os.PathLike, *, config=None, out: str | os.PathLike | None = None,
                 progress: bool = True, **settings) -> list[Path]:
    """Write one PNG sheet per class to ``out/sheets`` (default ``RUN/atlas/sheets``); returns the paths.

    ``settings``: keywords of the ``atlas`` section and ``classes``.
    """
    out = Path(out) if out is not None else Path(run) / "atlas" / _layer(run, config, settings)[1] / "sheets"
    return [save(crops_figure(view, store, dpi=150), out / view.stem, ("png",), dpi=150)[0]
            for view, store in _views(run, config, progress, settings)]


def write_figures(run: str | os.PathLike, *, config=None, out: str | os.PathLike | None = None,
                  progress: bool = True, **settings) -> list[Path]:
    """Write the figures of every class to ``out/figures/<stem>/`` (default ``RUN/atlas``); returns the paths."""
    out = Path(out) if out is not None else Path(run) / "atlas" / _layer(run, config, settings)[1]
    return [out / f for view, store in _views(run, config, progress, settings)
            for f in write_class_figures(view, store, out, figures=True)]
