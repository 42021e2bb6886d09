"""The image side of a class's views: which images get a page (the most sure, the wrong and the least sure
ones, every crop's photo, the dots of the image map), each image's concept decomposition (as CRAFT's per-image
figure: contribution bars, concept maps, the model's prediction), and each concept's maps on its top images."""
from __future__ import annotations

import numpy as np

from ..evidence import coincident_methods
from ..evidence.numbers import num, pct
from ..schema.classdata import ClassData
from .analysis import embed_2d
from .charts import BIAS_COLOUR, RESIDUAL_COLOUR, bar_chart, histogram
from .images import hex_colour
from .views import ConceptView, ImageView, MapView, image_name, image_page

KINDS = ("most sure", "wrong", "least sure")


def select_examples(data: ClassData, n: int) -> dict[str, list[int]]:
    """The ``n`` images with the highest class logit, the ``n`` the model gets wrong (top-1 is another class;
    lowest class logit first) and the ``n`` right ones with the lowest class logit (not already shown)."""
    kept = data.kept
    logit = np.nan_to_num(data.logit[kept].astype(np.float64), nan=-np.inf)
    by_logit = kept[np.argsort(-logit, kind="stable")]
    sure = [int(i) for i in by_logit[:n]]
    known = data.predicted is not None and data.class_index >= 0
    wrong_mask = (data.predicted[by_logit] != data.class_index) if known else np.zeros(len(by_logit), bool)
    wrong = [int(i) for i in by_logit[wrong_mask][::-1][:n]]
    right = [int(i) for i in by_logit[~wrong_mask][::-1] if int(i) not in sure]
    return {"most sure": sure, "wrong": wrong, "least sure": right[:n]}


def feature_method(data: ClassData, method: str) -> str:
    """The values an image's concepts are shown by: ``method``, or for a run without a class score (prevalence: one
    strongest concept per image) the image's mean coefficients (``mass``)."""
    return "mass" if data.importance_attrs.get("importance_kind") == "prevalence" else method


def per_image_features(data: ClassData, method: str) -> np.ndarray:
    """(n_images, r) what each image's concepts weigh for ``method`` (mean coefficient without importance)."""
    if method in data.methods:
        return np.nan_to_num(np.asarray(data.methods[method].per_image, np.float64))
    sums = np.zeros((len(data.skipped), data.n_concepts))
    counts = np.zeros(len(data.skipped))
    if len(data.coefficients):
        np.add.at(sums, data.row_image, data.coefficients)
        np.add.at(counts, data.row_image, 1)
    return sums / np.maximum(counts, 1)[:, None]


def _decomposition(data: ClassData, i: int, method: str, diag, hexes) -> tuple[list, list, list, list, str, bool]:
    """Values, labels, colours, concepts, axis and whether the values are logit units, for image ``i``."""
    values = np.asarray(data.methods[method].per_image[i], np.float64) if method in data.methods else \
        per_image_features(data, method)[i]
    order = [int(k) for k in np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")]
    logit_units = method in ("gradient", "occlusion")
    shown = list(values[order]) if logit_units else list(values[order] / (np.nansum(values) or 1.0))
    labels, colours, concepts = [f"concept {k}" for k in order], [hexes[k] for k in order], list(order)
    axis = "share of this image's summed Sobol indices" if method == "sobol" else "share of this image's values"
    if method not in data.methods:
        axis = "share of this image's summed mean concept coefficients (no importance)"
    if logit_units:
        axis = f"contribution to this image's logit ({num(data.logit[i])}), in logit units"
        if diag.decomposition == "exact" and method == "gradient":
            residual = float(data.logit[i]) - diag.logit_bias - float(np.nansum(values))
            for label, value, colour in (("residual", residual, RESIDUAL_COLOUR),
                                         ("bias", diag.logit_bias, BIAS_COLOUR)):
                shown.append(value)
                labels.append(label)
                colours.append(colour)
                concepts.append(None)
            axis += "; the bars add up to the logit"
    return shown, labels, colours, concepts, axis, logit_units


def distinct_methods(data: ClassData) -> dict[str, str]:
    """key -> method: one entry per method that is not the same numbers as another (``"gradient occlusion"`` ->
    ``"gradient"`` when they coincide by construction); the key lists the methods it stands for."""
    same = coincident_methods(data)
    out = {}
    for method in (data.methods or {"mass": None}):
        if method in same:
            continue
        names = [method] + [m for m, other in same.items() if other == method]
        out[" ".join(names)] = method
    return out


def image_charts(data: ClassData, i: int, diag, hexes: dict[int, str], method: str) -> dict:
    """The image's decomposition: gradient x input when computed (CRAFT's per-image figure, in logit units: with
    the residual and the bias the bars add up to the image's logit), else the class's method."""
    chosen = "gradient" if "gradient" in data.methods else feature_method(data, method)
    values, labels, colours, concepts, axis, units = _decomposition(data, i, chosen, diag, hexes)
    texts = [num(v, 3, signed=True) if units else pct(v) for v in values]
    hrefs = [f"classes/{data.stem}/c{k}.html" if k is not None else None for k in concepts]
    kinds = ["concept" if k is not None else label for k, label in zip(concepts, labels)]
    return {chosen: bar_chart(values, texts, labels, colours, axis=axis, hrefs=hrefs, kinds=kinds,
                              concepts=concepts)}


def image_view(data: ClassData, ctx, i: int, method: str, colours, diag, kinds: list[str]) -> ImageView:
    predicted = int(data.predicted[i]) if data.predicted is not None else -1
    hexes = {k: hex_colour(c) for k, c in colours.items()}
    view = ImageView(index=i, name=image_name(data.image_paths[i]), path=data.image_paths[i], photo="",
                     page=image_page(data.stem, i), logit=float(data.logit[i]), predicted=predicted,
                     predicted_name=ctx.index.logit_name(predicted), correct=predicted == data.class_index,
                     kinds=kinds, charts=image_charts(data, i, diag, hexes, method))
    values = per_image_features(data, feature_method(data, method))[i]
    top = [int(k) for k in np.argsort(-values, kind="stable")[:ctx.settings.n_overlay]]
    units = method in ("gradient", "occlusion")
    for k in top:
        text = f"{num(values[k], 3, signed=True)} logit" if units else pct(values[k] / (np.nansum(values) or 1.0))
        view.legend.append({"concept": k, "colour": hexes[k], "text": text})
    if ctx.write:
        store = ctx.store
        view.photo = store.photo_url(i)
        view.overlay = store.composite_map(i, top, [colours[k] for k in top])
        view.maps = [MapView(k, hexes[k], store.presence_map(i, k, hexes[k]), None, float(values[k]), item["text"])
                     for k, item in zip(top, view.legend)]  # contribution maps: on the concept pages
    return view


def image_map(data: ClassData, images: list[ImageView], features: np.ndarray, order: list[int], hexes) -> list:
    """The 2-D map of the images with a page: PCA of their per-image values, coloured by their top concept."""
    coords = embed_2d(features[[v.index for v in images]]) if images else np.zeros((0, 2))
    rank = {k: r for r, k in enumerate(order)}
    points = []
    for (x, y), view in zip(coords, images):
        top = int(np.argmax(features[view.index])) if features.shape[1] else 0
        points.append({"x": float(x), "y": float(y), "image": view.index, "image_name": view.name,
                       "page": view.page, "concept": top, "rank": rank.get(top, 0) + 1,
                       "colour": hexes.get(top, "#999999") if rank.get(top, 99) < 12 else "#999999"})
    return points


def concept_details(data: ClassData, ctx, concepts: list[ConceptView], by_image: dict[int, ImageView]) -> None:
    """Each concept's maps on its top images and the distribution of its per-image values (concept page)."""
    for view in concepts:
        k = view.index
        for crop in view.crops[:4]:
            image = by_image[crop.image]
            presence = ctx.store.presence_map(crop.image, k, view.colour) if ctx.write else None
            scale = ctx.store.contribution_scale(crop.image) if ctx.write else 1.0
            contribution = ctx.store.contribution_map(crop.image, k, scale) if ctx.write else None
            view.maps.append((image, MapView(k, view.colour, presence, contribution, None, "")))
        for key, method in distinct_methods(data).items():
            if method not in data.methods or feature_method(data, method) != method:
                continue
            values = np.asarray(data.methods[method].per_image, np.float64)[data.kept, k]
            axis = "contribution to the image's logit (logit units)" if method in ("gradient", "occlusion") \
                else "Sobol total index on the image"
            view.distribution[key] = histogram(values, 12, axis, lambda v: num(v, 2))


def _walk(subconcepts):
    """Every sub-concept of a tree (depth first)."""
    for sub in subconcepts:
        yield sub
        yield from _walk(sub.children)


def image_views(data: ClassData, ctx, method: str, colours, concepts: list[ConceptView], diag):
    """(every image with a page, the examples by kind, the image map's points)."""
    examples = select_examples(data, ctx.settings.n_examples)
    kept = data.kept
    if len(kept) > ctx.settings.max_points:
        kept = kept[np.linspace(0, len(kept) - 1, ctx.settings.max_points).round().astype(int)]
    wanted = set(int(i) for i in kept) | {c.image for view in concepts for c in view.crops}
    wanted |= {c.image for view in concepts for sub in _walk(view.subconcepts) for c in sub.crops}
    wanted |= {i for ids in examples.values() for i in ids}
    kinds = {i: [kind for kind in KINDS if i in examples[kind]] for i in wanted}
    images = [image_view(data, ctx, i, method, colours, diag, kinds[i]) for i in sorted(wanted)]
    for before, view, after in zip([None] + images[:-1], images, images[1:] + [None]):
        view.prev_page, view.next_page = (before.page if before else None), (after.page if after else None)
    by_image = {v.index: v for v in images}
    concept_details(data, ctx, concepts, by_image)
    hexes = {k: hex_colour(c) for k, c in colours.items()}
    points = image_map(data, images, per_image_features(data, feature_method(data, method)),
                       [c.index for c in concepts], hexes)
    return images, {kind: [by_image[i] for i in ids] for kind, ids in examples.items()}, points
