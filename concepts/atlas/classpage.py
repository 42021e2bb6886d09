"""The views of one class (:mod:`concepts.atlas.views`) from its artefacts: what the class, concept and image
pages show, and (through the :class:`~concepts.atlas.pictures.PhotoStore`) the pictures they need."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evidence import (MethodValues, choose_method, class_diagnostics, coincident_methods, method_values,
                        top_crops)
from ..evidence.methods import ranking
from ..evidence.numbers import pct
from ..schema.classdata import ClassData
from ..settings.atlas import AtlasSettings
from .alignment import Head, align
from .analysis import concentration, n_important, within_class_similarity
from .charts import BIAS_COLOUR, RESIDUAL_COLOUR, bar_chart
from .imagepage import image_views
from .images import concept_colour, hex_colour
from .layout import crop_frame, tint_style
from .pictures import PhotoStore
from .runindex import RunIndex
from .subconcepts import subconcept_tree, tree_note
from .views import AlignedClass, ClassView, ConceptView, CropView, MethodView, NeighbourView, Value, image_name, \
    image_page
from .visualisations import VisualisationWriter, class_visualisations

#: the pseudo-method of a class without importance: concepts ranked by their share of the coefficient mass
MASS = "mass"
#: the importance file of a run without a class score (``--head none``) holds this kind and method
PREVALENCE = "prevalence"
#: sub-concept crops shown per sub-concept
SUB_CROPS = 5


@dataclass
class ClassContext:
    """What a class's views are made with besides its own artefacts."""

    index: RunIndex
    pos: int
    settings: AtlasSettings
    store: PhotoStore
    head: Head | None = None
    head_reason: str = ""
    write: bool = True
    labels: tuple | None = None  # (manual, vocabulary) label files of the run, read once (None: read here)
    fviz: VisualisationWriter | None = None  # one per site (a dataset-scope atom's image is written once)


def importance_kind(data: ClassData) -> str:
    """``importance``, or ``prevalence`` when the run has no class score (``--head none``)."""
    return str(data.importance_attrs.get("importance_kind") or "importance")


def read_run_labels(run) -> tuple:
    """The run's label files, read once per build: ``(manual, vocabulary)`` for :func:`concept_labels`."""
    from ..schema.labels import read_manual_labels, read_vocabulary_labels

    return read_manual_labels(run), read_vocabulary_labels(run)


def class_labels(data: ClassData, ctx: ClassContext) -> list:
    """Each concept's :class:`~concepts.schema.labels.ConceptLabel` (manual, else vocabulary, else none)."""
    from ..schema.hdf5 import identity
    from ..schema.labels import concept_labels

    manual, vocabulary = ctx.labels if ctx.labels is not None else read_run_labels(ctx.store.run)
    return concept_labels(ctx.store.run, data.class_id, data.n_concepts, identity(data.concept_attrs),
                          manual=manual, vocabulary=vocabulary)


def mass_values(data: ClassData) -> MethodValues:
    """Concepts ranked by their share of the coefficient mass (a class without importance file)."""
    mass = np.abs(data.coefficients).sum(axis=0).astype(np.float64)
    total = mass.sum()
    share = mass / total if total > 0 else np.full(data.n_concepts, 1.0 / max(data.n_concepts, 1))
    nan = np.full(data.n_concepts, np.nan)
    return MethodValues(MASS, "coefficient mass", "share of the summed coefficients", share, nan, nan, mass, "",
                        ranking(share), False, False)


def prevalence_values(data: ClassData) -> MethodValues:
    """Prevalence (no class score): the share of the class's images whose strongest concept each one is, with its
    95% interval across images kept inside [0, 1]. Not an importance: no logit is involved."""
    imp = data.methods[PREVALENCE]
    share = np.asarray(imp.class_importance, np.float64)
    low = np.clip(np.asarray(imp.ci_low, np.float64), 0, 1) if imp.ci_low is not None else np.full_like(share, np.nan)
    high = np.clip(np.asarray(imp.ci_high, np.float64), 0, 1) if imp.ci_high is not None else \
        np.full_like(share, np.nan)
    return MethodValues(PREVALENCE, "prevalence", "share of the class's images whose strongest concept it is", share,
                        low, high, share, "", ranking(share), True, False)


def method_table(data: ClassData, logit: float) -> dict[str, MethodValues]:
    """Every method's values, in the file's order (the coefficient mass when there is none; prevalence alone for
    a run without a class score)."""
    if importance_kind(data) == PREVALENCE and PREVALENCE in data.methods:
        return {PREVALENCE: prevalence_values(data)}
    out = {m: method_values(data, m, logit) for m in data.methods}
    return out or {MASS: mass_values(data)}


def _text(values: MethodValues, v: float) -> str:
    return pct(v, signed=values.of_logit and v < 0)


def method_views(table: dict[str, MethodValues], same: dict[str, str], colours: dict[int, str],
                 diagnostics, stem: str) -> dict[str, MethodView]:
    """Per method: its labels and its bar chart (concepts in its own order, plus residual and bias when the
    values are shares of the logit)."""
    out = {}
    for name, mv in table.items():
        order = [int(k) for k in mv.order]
        values, low, high = list(mv.values[order]), list(mv.low[order]), list(mv.high[order])
        labels = [f"concept {k}" for k in order]
        kinds = ["concept"] * len(order)
        concepts: list[int | None] = list(order)
        if mv.of_logit and np.isfinite(diagnostics.residual_share):
            for kind, share in (("residual", diagnostics.residual_share), ("bias", diagnostics.bias_share)):
                if np.isfinite(share):
                    values.append(share)
                    low.append(np.nan)
                    high.append(np.nan)
                    labels.append(kind)
                    kinds.append(kind)
                    concepts.append(None)
        bar_colours = [colours[k] if k is not None else (RESIDUAL_COLOUR if kind == "residual" else BIAS_COLOUR)
                       for k, kind in zip(concepts, kinds)]
        hrefs = [f"classes/{stem}/c{k}.html" if k is not None else None for k in concepts]
        texts = [_text(mv, v) for v in values]
        chart = bar_chart(values, texts, labels, bar_colours, axis=mv.axis, low=low, high=high, hrefs=hrefs,
                          kinds=kinds, concepts=concepts)
        out[name] = MethodView(name, mv.label, mv.axis, mv.raw_unit, mv.exact, mv.of_logit, same.get(name), order,
                               chart)
    return out


def completeness_chart(d):
    """Concepts, residual and bias as shares of the logit (None when the logit cannot be split)."""
    if not np.isfinite(d.explained_share):
        return None
    rows = [("concepts", d.explained_share, "#2b8a3e"), ("residual", d.residual_share, RESIDUAL_COLOUR)]
    if d.decomposition == "exact":
        rows.append(("bias", d.bias_share, BIAS_COLOUR))
    values = [v for _, v, _ in rows]
    return bar_chart(values, [pct(v) for v in values], [r[0] for r in rows], [r[2] for r in rows],
                     axis="share of the class logit", kinds=[r[0] for r in rows])


def concept_values(table: dict[str, MethodValues], k: int) -> dict[str, Value]:
    out = {}
    for name, mv in table.items():
        rank = int(np.flatnonzero(mv.order == k)[0]) + 1
        out[name] = Value(float(mv.values[k]), float(mv.low[k]), float(mv.high[k]), float(mv.raw[k]), rank)
    return out


def crop_views(data: ClassData, ctx: ClassContext, crops, colour: tuple[int, int, int] | None) -> list[CropView]:
    """Crop views (and their files); ``colour=None``: no presence tint (a sub-concept has no map)."""
    out = []
    for crop in crops:
        width, height = crop_frame(crop.box, ctx.settings.crop_size)
        view = CropView(image=crop.image, rank=crop.rank, coefficient=crop.coefficient,
                        image_name=image_name(data.image_paths[crop.image]), url="",
                        page=image_page(data.stem, crop.image), width=width, height=height,
                        box=crop.box)
        if ctx.write:
            view.url = ctx.store.crop_url(crop.image, crop.box, crop.row)
            if colour is not None:
                view.tint = ctx.store.presence_map(crop.image, crop.concept, hex_colour(colour))
                view.tint_style = tint_style(crop.box, data.input_size)
        out.append(view)
    return out


def neighbours_here(sim: np.ndarray, k: int, n: int, stem: str, name: str, table) -> list[NeighbourView]:
    order = [int(j) for j in np.argsort(-sim[k], kind="stable") if j != k][:n]
    return [NeighbourView(class_name=name, concept=j, cosine=float(sim[k, j]), page=f"classes/{stem}/c{j}.html",
                          class_page=f"classes/{stem}.html",
                          values={m: float(mv.values[j]) for m, mv in table.items()},
                          ranks={m: int(np.flatnonzero(mv.order == j)[0]) + 1 for m, mv in table.items()},
                          same_class=True) for j in order]


def neighbours_other(ctx: ClassContext, k: int) -> list[NeighbourView]:
    out = []
    for nb in ctx.index.neighbours[ctx.pos][k] if ctx.index.neighbours else []:
        entry = ctx.index.entries[nb.class_pos]
        out.append(NeighbourView(class_name=entry.class_name, concept=nb.concept, cosine=nb.cosine,
                                 page=entry.concept_page(nb.concept), class_page=entry.page,
                                 values={m: float(v[nb.concept]) for m, v in entry.values.items()},
                                 ranks={m: int(v[nb.concept]) for m, v in entry.ranks.items()}))
    return out


def aligned_classes(ctx: ClassContext, found: dict, own: int) -> list[AlignedClass]:
    out = []
    for c, cosine in found["top"]:
        entry = ctx.index.by_logit(c)
        out.append(AlignedClass(c, ctx.index.logit_name(c), cosine, entry.page if entry else None, own=c == own))
    return out


def concept_views(data: ClassData, ctx: ClassContext, table, order, colours_rgb, visuals=None,
                  labels=None) -> list[ConceptView]:
    """The concepts in ``order``, each with its values, crops, similar concepts, alignment, and (when the run
    has them) its feature visualisation, label and sub-concepts."""
    s = ctx.settings
    crops = top_crops(data, s.top_k)
    tree = subconcept_tree(data, SUB_CROPS, lambda found: crop_views(data, ctx, found, None),
                           visuals.subconcepts if visuals is not None else None)
    sim = within_class_similarity(data.components)
    # without a class score the model's head is not what the run explains: no alignment with its classes
    scored = importance_kind(data) != PREVALENCE
    alignment = align(data.components, ctx.head, s.n_aligned, data.class_index) \
        if ctx.head is not None and scored else None
    hexes = {k: hex_colour(c) for k, c in colours_rgb.items()}
    out = []
    for k in order:
        view = ConceptView(index=k, colour=hexes[k], page=f"classes/{data.stem}/c{k}.html",
                           values=concept_values(table, k))
        view.crops = crop_views(data, ctx, crops[k], colours_rgb[k])
        view.similar_here = neighbours_here(sim, k, s.n_similar, data.stem, data.class_name, table)
        view.similar_other = neighbours_other(ctx, k)
        view.subconcepts = tree[k]
        view.visualisation = visuals.concepts.get(k) if visuals is not None else None
        if labels is not None and labels[k].source != "none":
            view.label = labels[k]
        if alignment is not None:
            view.aligned = aligned_classes(ctx, alignment[k], data.class_index)
            view.own_rank, view.own_cosine = alignment[k]["own_rank"], alignment[k]["own_cosine"]
        out.append(view)
    for before, view, after in zip([None] + out[:-1], out, out[1:] + [None]):
        view.prev_page = before.page if before else None
        view.next_page = after.page if after else None
    return out


def build_class_view(data: ClassData, ctx: ClassContext) -> ClassView:
    """Everything the pages of one class show (pictures written through ``ctx.store`` when ``ctx.write``)."""
    diag = class_diagnostics(data)
    table = method_table(data, diag.logit)
    method, note = choose_method(list(table), ctx.settings.method)
    order = [int(k) for k in table[method].order]
    colours = {k: concept_colour(rank) for rank, k in enumerate(order)}
    hexes = {k: hex_colour(c) for k, c in colours.items()}
    same = coincident_methods(data)
    visuals = class_visualisations(data, ctx.store.run, (ctx.fviz or VisualisationWriter(
        ctx.store.site, ctx.settings.image_format, ctx.settings.quality)) if ctx.write else None)
    concepts = concept_views(data, ctx, table, order, colours, visuals, class_labels(data, ctx))
    images, examples, points = image_views(data, ctx, method, colours, concepts, diag)
    share = np.asarray(table[method].values, np.float64)
    prev, nxt = ctx.index.around(ctx.pos)
    thumb = examples["most sure"][0].photo if examples.get("most sure") else (images[0].photo if images else None)
    return ClassView(
        class_id=data.class_id, class_name=data.class_name, class_index=data.class_index, stem=data.stem,
        page=f"classes/{data.stem}.html", n_images=data.n_images, n_images_listed=len(data.image_paths),
        n_concepts=data.n_concepts, factorization=str(data.concept_attrs.get("method", "?")),
        model=str(data.act_attrs.get("model", "?")), layer=str(data.act_attrs.get("layer", "?")),
        mode=str(data.act_attrs.get("mode", "?")), method=method, method_note=note,
        methods=method_views(table, same, hexes, diag, data.stem), diagnostics=diag,
        completeness=completeness_chart(diag), concepts=concepts, by_index={c.index: c for c in concepts},
        examples=examples, images=images, points=points,
        similarity=within_class_similarity(data.components).round(3).tolist(),
        alignment_note=ctx.head_reason, thumbnail=thumb, input_size=data.input_size,
        concentration=concentration(share), n_important=n_important(share),
        top_share=float(share[order[0]]) if order else 0.0, prev=prev, next=nxt, kind=importance_kind(data),
        logit_visualisation=visuals.logit, fviz_note=visuals.note,
        labelled=any(c.label is not None for c in concepts), tree_note=tree_note(data))
