"""Which cached layers an atlas covers, where each layer's pages go, and the layer switcher of the page header.

A one-layer atlas is the site root. An atlas of several layers (``concepts extract --layer A --layer B``) puts its
first layer at the site root and every other one in ``layers/<safe layer name>/``, each a complete site of its
own (index, class, concept, image and dictionary pages, pictures, static files), so that every page keeps its
relative links. The header of every page then lists the layers; each entry opens the same class (a class page,
or the class of a concept or image page), the shared dictionary or the index at that layer.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConceptsError
from ..schema import RunFolder
from ..schema.classdata import list_run_classes
from ..schema.layout import LAYERS_FOLDER, safe_filename, stage_files


@dataclass
class LayerSite:
    """One layer of an atlas: its run folder, its classes, and where its pages go (``prefix``, from the site
    root: ``""`` for the first layer, ``layers/<name>/`` for the others)."""

    name: str
    folder: Path
    found: list[tuple[str, str]]
    prefix: str = ""
    dictionary: bool = field(init=False)  # whether it has a shared dictionary (a dataset-scope run)
    stems: set[str] = field(init=False)

    def __post_init__(self):
        self.stems = {stem for _, stem in self.found}
        self.dictionary = (RunFolder(self.folder).dictionary_file).is_file()

    def target(self, here: str) -> str:
        """The page of this layer that corresponds to ``here`` (a page of another layer, from its site root):
        the same class page, the dictionary's index, else the index."""
        parts = here.split("/")
        if parts[0] == "classes" and len(parts) >= 2:
            stem = parts[1][:-5] if len(parts) == 2 and parts[1].endswith(".html") else parts[1]
            if stem in self.stems:
                return f"classes/{stem}.html"
        if parts[0] == "dictionary" and self.dictionary:
            return "dictionary/index.html"
        return "index.html"


def _has_importance(folder: Path) -> bool:
    return bool(stage_files(folder, "importance"))


def atlas_layers(run: Path, layers: tuple[str, ...] | None, classes: list[str] | None) -> list[LayerSite]:
    """The layers an atlas covers, in order: ``layers`` when given (each must be cached), else every cached layer
    with importances (the main layer first), else the main layer alone (an atlas without importance)."""
    folder = RunFolder(run)
    cached = folder.layers()
    if layers:
        chosen = [(name, RunFolder(run, layer=name).path) for name in dict.fromkeys(layers)]
        chosen = [(next((k for k, v in cached.items() if v == path), name), path) for name, path in chosen]
    else:
        chosen = [(name, path) for name, path in cached.items() if _has_importance(path)]
        if not chosen:
            chosen = [next(iter(cached.items()), ("features", folder.root))]
    out = []
    for pos, (name, path) in enumerate(chosen):
        found = list_run_classes(path, classes=classes)
        if not found:
            raise ConceptsError(f"{path} has no class with both activations and concepts (layer {name}); "
                                "run `concepts extract` and `concepts factorize` first")
        prefix = "" if pos == 0 else f"{LAYERS_FOLDER}/{safe_filename(name)}/"
        out.append(LayerSite(name, path, found, prefix))
    return out


class LayerSwitch:
    """The layer switcher of one layer's pages: per page, a link to the corresponding page of every layer."""

    def __init__(self, layers: list[LayerSite], current: int):
        self.layers, self.current = layers, current

    def links(self, here: str) -> list[dict]:
        """``[{name, href, current}]`` for the page ``here`` (from the current layer's site root); empty for a
        one-layer atlas."""
        if len(self.layers) < 2:
            return []
        me = self.layers[self.current]
        start = posixpath.dirname(me.prefix + here) or "."
        out = []
        for pos, layer in enumerate(self.layers):
            target = here if pos == self.current else layer.target(here)
            out.append({"name": layer.name, "current": pos == self.current,
                        "href": posixpath.relpath(layer.prefix + target, start)})
        return out


@dataclass
class SiteNav:
    """The site-wide navigation of one layer's pages: its layer switcher and whether it has a shared dictionary."""

    switch: LayerSwitch | None = None
    dictionary: bool = False
    layer: str = ""

    def links(self, here: str) -> list[dict]:
        return self.switch.links(here) if self.switch is not None else []
