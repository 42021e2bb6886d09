"""What the pages show, as plain data: one view per class, concept and image, filled by
:mod:`concepts.atlas.classpage` and rendered by the templates (``templates/*.html``) and the figures.

URLs in views are relative to the site root (a template puts its ``root`` in front of them).

What the later stages add to a concept (each shown only when the run has it): :class:`Visualisation` (its MACO
feature visualisation and transparency map, ``RUN/fviz``), its name (a
:class:`~concepts.schema.labels.ConceptLabel`: ``RUN/labels.csv`` or ``concepts label``) and its sub-concepts
(:class:`SubconceptView`, ``factorize --recursive``). ``ClassView.kind`` is ``prevalence`` for a run without a
class score (``--head none``): its values are prevalence, not importance.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..evidence import Diagnostics
from .charts import BarChart, Histogram


def image_page(stem: str, image: int) -> str:
    """The URL (from the site root) of an image's page: one page per class, ``classes/<stem>/image.html``, that
    draws the image its query names (``?i=<n>``) from the class's ``images.js``."""
    return f"classes/{stem}/image.html?i={image}"


def image_name(raw: str) -> str:
    """A photo's file name (its full name, as shown under crops and on hover)."""
    return os.path.basename(raw) or raw


@dataclass
class Value:
    """One method's number for one concept (fractions: 1 = 100%)."""

    value: float
    low: float
    high: float
    raw: float
    rank: int


@dataclass
class MethodView:
    name: str  # sobol | gradient | occlusion | mass
    label: str
    axis: str  # what the values are
    raw_unit: str
    exact: bool
    of_logit: bool
    same_as: str | None  # the method it coincides with by construction
    order: list[int]  # concept indices, most important first
    chart: BarChart | None = None


@dataclass
class Visualisation:
    """A feature visualisation (of a concept or of the class logit): the image and the image seen through its
    transparency map (MACO's alpha), URLs from the site root; ``excites``: whether the image passes the fviz
    stage's check (its own coefficient above the class's 99th percentile and its largest; None: not a concept)."""

    image: str
    transparency: str | None = None
    caption: str = ""
    excites: bool | None = None


@dataclass
class CropView:
    image: int
    rank: int
    coefficient: float
    image_name: str  # the photo's full file name
    url: str  # the crop file
    page: str  # the photo's image page
    width: int  # displayed size, CSS pixels
    height: int
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x0, y0, x1, y1 in model-input pixels
    tint: Any = None  # presence map of the concept (a pictures.CanvasMap), drawn over the crop when tinted
    tint_style: str = ""


@dataclass
class SubconceptView:
    """One sub-concept of a concept (a node of the class's concept tree) and its own sub-concepts."""

    node: int  # node id in the concepts file's tree (r, r+1, ...)
    index: int  # its position among its siblings
    depth: int  # 1 for a concept's sub-concepts
    n_rows: int  # the parent's strong rows it was fitted on
    shares: dict[str, float] = field(default_factory=dict)  # method -> signed share of the parent's importance
    crops: list[CropView] = field(default_factory=list)  # its strongest rows (one per photo)
    children: list["SubconceptView"] = field(default_factory=list)
    visualisation: Visualisation | None = None  # its MACO image (RUN/fviz, ``subconcepts/``)


@dataclass
class NeighbourView:
    class_name: str
    concept: int
    cosine: float
    page: str  # the concept's page
    class_page: str
    values: dict[str, float] = field(default_factory=dict)  # method -> value shown in its own class
    ranks: dict[str, int] = field(default_factory=dict)
    same_class: bool = False


@dataclass
class AlignedClass:
    class_index: int
    name: str
    cosine: float
    page: str | None  # its class page when the atlas has it
    own: bool


@dataclass
class MapView:
    """One concept on one image: where it is (presence) and what it adds to the logit there (contribution)."""

    concept: int
    colour: str
    presence: Any  # pictures.CanvasMap or None
    contribution: Any
    value: float | None  # the concept's contribution to this image's logit (or the default method's value)
    text: str


@dataclass
class ConceptView:
    index: int  # position in the concept bank
    colour: str
    page: str
    values: dict[str, Value]  # method -> its value
    crops: list[CropView] = field(default_factory=list)
    similar_here: list[NeighbourView] = field(default_factory=list)
    similar_other: list[NeighbourView] = field(default_factory=list)
    aligned: list[AlignedClass] = field(default_factory=list)
    own_rank: int | None = None  # rank of the own class among the head's classes by alignment
    own_cosine: float | None = None
    visualisation: Visualisation | None = None  # its MACO image (RUN/fviz)
    label: Any = None  # its ConceptLabel (label, source, score, words); None when the run names no concept
    subconcepts: list[SubconceptView] = field(default_factory=list)  # factorize --recursive
    maps: list[tuple["ImageView", MapView]] = field(default_factory=list)  # its top images (concept page)
    distribution: dict[str, Histogram] = field(default_factory=dict)  # method -> per-image values
    prev_page: str | None = None
    next_page: str | None = None
    atom: int | None = None  # dataset scope: the concept's atom in the shared dictionary, and that atom's page
    atom_page: str | None = None


@dataclass
class ImageView:
    index: int
    name: str  # full file name
    path: str  # as recorded
    photo: str  # the photo file
    page: str
    logit: float
    predicted: int
    predicted_name: str
    correct: bool
    kinds: list[str] = field(default_factory=list)  # most sure | wrong | least sure
    overlay: Any = None  # composite map of the top concepts (a pictures.CanvasMap)
    legend: list[dict[str, Any]] = field(default_factory=list)
    maps: list[MapView] = field(default_factory=list)
    charts: dict[str, BarChart] = field(default_factory=dict)  # method -> the image's decomposition
    prev_page: str | None = None
    next_page: str | None = None


@dataclass
class ClassView:
    class_id: str
    class_name: str
    class_index: int
    stem: str
    page: str
    n_images: int
    n_images_listed: int
    n_concepts: int
    factorization: str
    model: str
    layer: str
    mode: str
    method: str  # the default method
    method_note: str
    methods: dict[str, MethodView]
    diagnostics: Diagnostics
    completeness: BarChart | None
    concepts: list[ConceptView]  # in the default method's order
    by_index: dict[int, ConceptView]
    examples: dict[str, list[ImageView]]  # kind -> images
    images: list[ImageView]  # every image with a page, in image order
    points: list[dict[str, Any]]
    similarity: list[list[float]]
    alignment_note: str
    thumbnail: str | None
    input_size: int
    concentration: float
    n_important: int
    top_share: float
    prev: Any = None  # ClassEntry of the previous / next class
    next: Any = None
    figures: list[str] = field(default_factory=list)  # figure files, from the site root
    kind: str = "importance"  # importance | prevalence (no class score: --head none)
    logit_visualisation: Visualisation | None = None  # MACO image of the class logit
    fviz_note: str = ""  # why the run's feature visualisations are not shown ('' when they are, or there are none)
    labelled: bool = False  # some concept has a label (the page offers the label filter)
    tree_note: str = ""  # the sub-concept tree's settings, in words ('' without sub-concepts)
