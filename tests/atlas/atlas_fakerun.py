"""A fabricated run folder that follows the artefact contract of docs/ARCHITECTURE.md.

Real photos (Imagenette val50) when the shared data is there, otherwise generated pictures;
random but valid arrays with planted structure (a known concept order, blob-shaped presence maps).
Used for the edge cases that a real run cannot produce (a class name with markup, missing
photos, skipped images).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fake_artefacts import write_activations, write_concepts, write_importance  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# the shared data beside the project (/work/shared for /work/main, also found from a worktree /work/wt/NAME)
SHARED = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
              ROOT.parent / "shared" / "data") / "imagenette" / "val50"
PREPROCESSING = {"input_size": 224, "interpolation": "bicubic", "crop_pct": 0.875,
                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _photos(root: Path, wnid: str | None, n: int, rng: np.random.Generator) -> list[str]:
    if wnid and (SHARED / wnid).is_dir():
        files = sorted((SHARED / wnid).glob("*.JPEG"))[:n]
        if len(files) == n:
            return [str(p.resolve()) for p in files]
    out = root / "photos" / (wnid or "synthetic")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = int(rng.integers(200, 320)), int(rng.integers(200, 320))
        base = rng.integers(0, 255, size=3)
        pix = np.clip(base + rng.normal(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
        path = out / f"img_{i:03d}.jpg"
        Image.fromarray(pix).save(path, quality=85)
        paths.append(str(path))
    return paths


def crop_boxes(size: int = 224, patch: int = 64) -> np.ndarray:
    stride = int(round(0.8 * patch))
    starts = list(range(0, size - patch + 1, stride))
    return np.array([[x, y, x + patch, y + patch] for y in starts for x in starts], dtype=np.int32)


def write_class(run: Path, class_id: str, class_name: str, class_index: int, *, wnid: str | None = None,
                n_images: int = 6, r: int = 5, dim: int = 24, grid: int = 7, seed: int = 0,
                methods=("sobol", "gradient", "occlusion"), skipped: tuple[int, ...] = (),
                missing_photo: bool = False, common: np.ndarray | None = None) -> dict:
    """Write the three artefacts of one class; returns the arrays written (ground truth)."""
    rng = np.random.default_rng(seed)
    paths = _photos(run, wnid, n_images, rng)
    if missing_photo:
        paths[-1] = str(run / "nowhere" / "lost.jpg")
    skip = np.zeros(n_images, bool)
    skip[list(skipped)] = True
    boxes = crop_boxes()
    kept = np.flatnonzero(~skip)
    row_image = np.repeat(kept, len(boxes)).astype(np.int32)
    row_box = np.tile(boxes, (len(kept), 1)).astype(np.int32)
    row_pos = np.tile(np.stack(np.divmod(np.arange(len(boxes)), 4), axis=1), (len(kept), 1)).astype(np.int32)
    n_rows = len(row_image)
    maps = np.abs(rng.normal(size=(n_images, grid * grid, dim))).astype(np.float16)
    maps[skip] = 0
    rows = np.abs(rng.normal(size=(n_rows, dim))).astype(np.float16)
    sizes = [_size(p) for p in paths]
    logit = rng.normal(8, 2, n_images).astype(np.float32)
    predicted = np.where(np.arange(n_images) % 3 == 2, class_index + 1, class_index)  # every third image is wrong
    write_activations(run, class_id, maps, skipped=skip, class_index=class_index, paths=paths, rows=rows,
                      boxes=boxes, logit=logit, predicted=np.where(skip, -1, predicted),
                      widths=np.array([w for w, _ in sizes]), heights=np.array([h for _, h in sizes]),
                      sha256=[f"{i:064x}" for i in range(n_images)], class_name=class_name,
                      class_index_source="fixture", model="fake_model", weights="fake", weights_sha256="0" * 64,
                      preprocessing=PREPROCESSING, patch_size=64, stride=51, config={"images": str(run)},
                      config_hash="fixture01", image_size=256)
    components = np.abs(rng.normal(size=(r, dim))).astype(np.float32)
    if common is not None:  # plant a concept shared with another class
        components[0] = common
    coefficients = np.abs(rng.normal(size=(n_rows, r))).astype(np.float32)
    write_concepts(run, class_id, components, coefficients, class_name=class_name, params={"max_iter": 200},
                   config_hash="fixture02", source_config_hash="fixture01", model="fake_model")

    truth = {"paths": paths, "components": components, "coefficients": coefficients, "skipped": skip,
             "row_image": row_image, "row_box": row_box, "methods": {}}
    presence = np.zeros((n_images, r, grid, grid), np.float32)
    yy, xx = np.mgrid[0:grid, 0:grid]
    for i in kept:
        for k in range(r):
            cy, cx = rng.uniform(0, grid - 1, 2)
            presence[i, k] = rng.uniform(0.2, 2.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
    arrays = {}
    for m, method in enumerate(methods):
        per_image = np.abs(rng.normal(size=(n_images, r))).astype(np.float32)
        per_image[skip] = 0
        raw = (per_image[kept].mean(axis=0) * (1 + m * 0.1)).astype(np.float32)
        share = (raw / raw.sum()).astype(np.float32)
        arrays[method] = {"per_image": per_image, "class_importance": raw, "share": share,
                          "ci_low": (raw * 0.9).astype(np.float32), "ci_high": (raw * 1.1).astype(np.float32)}
        if method == "sobol":  # only sobol gives an interval of the share here
            arrays[method].update(share_ci_low=(share * 0.8).astype(np.float32),
                                  share_ci_high=(share * 1.2).astype(np.float32))
        arrays[method]["attrs"] = {"exact": method != "sobol"}
        truth["methods"][method] = {"per_image": per_image, "class_importance": raw, "share": share}
    fidelity = _fidelity(logit[kept], arrays.get("gradient"), methods)
    contribution = presence * rng.choice([-0.5, 1.0], size=presence.shape)  # some positions lower the logit
    write_importance(run, class_id, arrays, presence=presence.astype(np.float16), config_hash="fixture03",
                     kept=~skip, linear_head=True, fidelity_attrs=fidelity,
                     contribution=contribution.astype(np.float16))
    truth["fidelity"] = fidelity
    truth["presence"] = presence.astype(np.float16)
    return truth


def _size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as picture:
            return picture.size
    except OSError:
        return 0, 0


def _fidelity(logits: np.ndarray, gradient: dict | None, methods) -> dict:
    """Fidelity attributes as the importance stage writes them: with a linear head, h(UW) = bias + the gradient
    contributions (bias 0.25 here), and h(A) the model's logit."""
    out = {f"{m}_{s}": float(v) for m in methods for s, v in
           (("c_deletion", 3.0), ("c_insertion", 8.0), ("c_mufidelity", 0.9))}
    if gradient is None:
        return out
    concepts = float(np.asarray(gradient["class_importance"], np.float64).sum())
    original = float(np.mean(logits))
    out.update(reconstruction_logit_original=original, reconstruction_logit_reconstructed=concepts + 0.25,
               reconstruction_logit_ratio=(concepts + 0.25) / original, reconstruction_logit_correlation=0.8,
               reconstruction_logit_abs_diff=abs(original - concepts - 0.25), reconstruction_relative_error=0.7)
    return out


EVIL_NAME = '<script>window.__pwned = 1</script> & "tench" $\\frac{1 $'


def make_fake_run(root: Path, *, evil: bool = True, n_images: int = 6, r: int = 5) -> dict:
    """Three classes: two Imagenette-like ones and (``evil``) one whose name is markup.

    Concept 0 of class B is a copy of concept 0 of class A (cosine 1): the similar-concept
    link of A's concept 0 must point to it.
    """
    root = Path(root)
    rng = np.random.default_rng(123)
    common = np.abs(rng.normal(size=24)).astype(np.float32)
    truth = {
        "n01440764": write_class(root, "n01440764", "tench", 0, wnid="n01440764", n_images=n_images, r=r,
                                 seed=1, common=common),
        "n02102040": write_class(root, "n02102040", "English springer", 217, wnid="n02102040",
                                 n_images=n_images, r=r, seed=2, common=common, skipped=(1,)),
    }
    if evil:
        truth["n99<evil>"] = write_class(root, "n99<evil>", EVIL_NAME, 999, wnid=None, n_images=4, r=r, seed=3,
                                         methods=("gradient",), missing_photo=True)
    return truth


def truth_from_files(run: Path) -> dict:
    """The same dict as :func:`write_class` returns, read back from any run's artefact files."""
    from concepts.schema import open_run

    folder = open_run(run)
    truth = {}
    for class_id in folder.classes("extract"):
        with folder.activations(class_id) as cache:
            entry = {"paths": cache.images["path"], "skipped": cache.images["skipped"], "row_image": cache.row_image,
                     "row_box": cache.row_box, "logit": cache.images["logit"], "methods": {}}
        concepts = folder.concepts(class_id)
        entry["components"], entry["coefficients"] = concepts.components, concepts.coefficients
        record = folder.importance(class_id, maps=False)
        entry["fidelity"] = record.fidelity_attrs
        for method, imp in record.methods.items():
            entry["methods"][method] = {"per_image": imp.per_image, "class_importance": imp.class_importance,
                                        "share": imp.share}
        truth[class_id] = entry
    return truth


def default_method(methods) -> str:
    """The method an atlas page ranks by by default (gradient x input, else Sobol, else occlusion)."""
    return next(m for m in ("gradient", "sobol", "occlusion") if m in methods)


def shown_values(t: dict, method: str) -> np.ndarray:
    """The values a page shows for a method (computed here from the files, independently of the package):
    Sobol shares; gradient and occlusion as shares of the mean logit h(A)."""
    m = t["methods"][method]
    if method == "sobol":
        return np.asarray(m["share"], np.float64)
    logit = t["fidelity"].get("reconstruction_logit_original")
    if logit is None:
        logit = float(np.mean(np.asarray(t["logit"])[~np.asarray(t["skipped"], bool)]))
    return np.asarray(m["class_importance"], np.float64) / float(logit)


def shown_order(t: dict, method: str) -> list[int]:
    raw = np.asarray(t["methods"][method]["class_importance"], np.float64)
    return np.argsort(-raw, kind="stable").tolist()
