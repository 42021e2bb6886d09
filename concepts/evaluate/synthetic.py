"""Synthetic images whose concepts are known by construction.

Every image is a 64x64 RGB scene: a low-contrast noisy background with one to three
non-overlapping objects. Each object is one *planted concept* (a texture or a coloured
shape), drawn without anti-aliasing so that the per-pixel label map is exact.

Classes are defined by the concepts they contain: class ``c`` always contains its *key*
concept (which appears in no other class, so the class truly depends on it) and, each
with probability 1/2, the two *shared* distractor concepts, which appear in every class
and therefore carry no class information.

Everything is deterministic from a seed: ``render_scene(class_index, rng)`` draws one
scene, ``generate(n_per_class, seed)`` a whole set.

The ``subtypes`` variant (``concepts synth --variant subtypes``) plants one key concept with two visually distinct
sub-types that count as the same class cue: the ``stripes`` of class ``zebra`` are horizontal (0 degrees) or
vertical (90 degrees), each object one of the two with probability 1/2, instead of diagonal. ``Scene.subtypes``
(and ``subtypes`` in the mask files) labels every pixel with its sub-type (0: none, 1: stripes at 0 degrees, 2:
stripes at 90 degrees), so that a recursive decomposition can be checked against the truth. Every other concept
and class, and every random draw of the standard set, are unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConceptsError

IMAGE_SIZE = 64

# Label 0 is the background; planted concepts are labels 1..K.
CONCEPTS = (
    "background",
    "stripes",
    "checker",
    "dots",
    "red_disk",
    "blue_square",
    "green_triangle",
    "yellow_ring",
)
CONCEPT_INDEX = {name: i for i, name in enumerate(CONCEPTS)}

# (class name, key concept): each class is defined by one concept it alone contains.
CLASSES = (
    ("zebra", "stripes"),
    ("chess", "checker"),
    ("dotty", "dots"),
    ("sun", "red_disk"),
    ("box", "blue_square"),
)
SHARED = ("green_triangle", "yellow_ring")

#: the data set variants; ``subtypes``: the stripes of ``zebra`` come as two sub-types (see the module docstring)
VARIANTS = ("standard", "subtypes")
#: the sub-types of the ``subtypes`` variant: concept -> sub-type names, labelled 1, 2, ... in ``Scene.subtypes``
SUBTYPES = {"stripes": ("stripes_0deg", "stripes_90deg")}
SHARED_PROBABILITY = 0.5

COLOURS = {
    "red_disk": (220, 30, 30),
    "blue_square": (30, 60, 220),
    "green_triangle": (30, 190, 60),
    "yellow_ring": (235, 215, 20),
}
BLACK = (15, 15, 15)
WHITE = (240, 240, 240)


def class_names() -> list[str]:
    """Class folder names, in logit order (``<index>_<name>`` so that sorting keeps the order)."""
    return [f"{i}_{name}" for i, (name, _) in enumerate(CLASSES)]


def class_concepts(class_index: int) -> dict[str, list[str]]:
    """The concepts a class may contain: ``{'key': [...], 'shared': [...]}``."""
    return {"key": [CLASSES[class_index][1]], "shared": list(SHARED)}


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ConceptsError(f"unknown synthetic variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant


def definition(variant: str = "standard") -> dict:
    """The JSON-able description of the data set: concepts, labels and class definitions."""
    return {
        "variant": check_variant(variant),
        "subtypes": {k: list(v) for k, v in SUBTYPES.items()} if variant == "subtypes" else {},
        "image_size": IMAGE_SIZE,
        "concepts": list(CONCEPTS),
        "background_label": 0,
        "classes": [
            {
                "index": i,
                "folder": folder,
                "name": name,
                "key_concept": key,
                "key_label": CONCEPT_INDEX[key],
                "shared_concepts": list(SHARED),
                "shared_probability": SHARED_PROBABILITY,
            }
            for i, (folder, (name, key)) in enumerate(zip(class_names(), CLASSES))
        ],
    }


@dataclasses.dataclass
class Scene:
    image: np.ndarray  # (S, S, 3) uint8
    labels: np.ndarray  # (S, S) uint8, 0 = background, k = CONCEPTS[k]
    class_index: int
    present: list[str]  # planted concepts in the scene
    subtypes: np.ndarray | None = None  # (S, S) uint8 sub-type labels (the ``subtypes`` variant), else None

    def masks(self) -> np.ndarray:
        """(K+1, S, S) bool one-hot masks, index = concept label (0 = background)."""
        return self.labels[None] == np.arange(len(CONCEPTS))[:, None, None]


# ---------------------------------------------------------------------------------------
# drawing


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-contrast smooth noise around a random mid-grey tint (never pure black/white/colour)."""
    coarse = rng.normal(0.0, 1.0, size=(size // 8, size // 8, 3))
    smooth = np.kron(coarse, np.ones((8, 8, 1)))
    base = rng.uniform(95, 150) + rng.uniform(-12, 12, size=3)
    img = base + 10.0 * smooth + rng.normal(0.0, 4.0, size=(size, size, 3))
    return np.clip(img, 70, 180)


def _region(kind: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    """Boolean support of a disc / square / triangle / ring of 'radius' r centred at (cy, cx)."""
    dy, dx = yy - cy, xx - cx
    if kind == "disk":
        return dy * dy + dx * dx <= r * r
    if kind == "square":
        return (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if kind == "triangle":  # apex up, base at cy + r
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2.0)
    if kind == "ring":
        d2 = dy * dy + dx * dx
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    raise ValueError(kind)


def _texture(name: str, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, subtype: int = 0) -> np.ndarray:
    """Boolean 'ink' pattern of a texture concept over the whole image (phase drawn at random). ``subtype`` of
    the stripes: 0 diagonal (the standard set), 1 horizontal (0 degrees), 2 vertical (90 degrees)."""
    py, px = rng.integers(0, 8, size=2)
    if name == "stripes" and subtype:  # period 8 px, along x (horizontal bands) or along y
        return ((yy + py) // 4) % 2 == 0 if subtype == 1 else ((xx + px) // 4) % 2 == 0
    if name == "stripes":  # diagonal stripes, period 8 px
        return ((yy + xx + py) // 4) % 2 == 0
    if name == "checker":  # 4-px checkerboard
        return (((yy + py) // 4) + ((xx + px) // 4)) % 2 == 0
    if name == "dots":  # 2x2 dots on a 6-px lattice
        return (((yy + py) % 6) < 2) & (((xx + px) % 6) < 2)
    raise ValueError(name)


def _draw(name: str, img: np.ndarray, labels: np.ndarray, cy: float, cx: float, r: float,
          rng: np.random.Generator, subtypes: np.ndarray | None = None) -> None:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    label = CONCEPT_INDEX[name]
    if name in ("stripes", "checker", "dots"):
        support = _region("disk" if rng.random() < 0.5 else "square", yy, xx, cy, cx, r)
        subtype = 0
        if subtypes is not None and name in SUBTYPES:
            subtype = 1 + int(rng.integers(len(SUBTYPES[name])))
            subtypes[support] = subtype
        ink = _texture(name, yy, xx, rng, subtype)
        img[support & ink] = BLACK
        img[support & ~ink] = WHITE
    else:
        kind = {"red_disk": "disk", "blue_square": "square", "green_triangle": "triangle",
                "yellow_ring": "ring"}[name]
        support = _region(kind, yy, xx, cy, cx, r)
        img[support] = COLOURS[name]
    labels[support] = label


def _place(n: int, rng: np.random.Generator, size: int) -> list[tuple[float, float, float]]:
    """Centres and radii of ``n`` objects whose bounding boxes do not overlap (with a gap)."""
    for _ in range(1000):
        boxes: list[tuple[float, float, float]] = []
        for _ in range(n):
            for _ in range(200):
                r = float(rng.uniform(8.0, 12.0))
                cy, cx = rng.uniform(r + 1, size - r - 2, size=2)
                if all(max(abs(cy - y), abs(cx - x)) > r + q + 3 for y, x, q in boxes):
                    boxes.append((float(cy), float(cx), r))
                    break
            else:
                break
        if len(boxes) == n:
            return boxes
    raise RuntimeError("could not place objects")  # pragma: no cover - never with n <= 3 at 64 px


def render_scene(class_index: int, rng: np.random.Generator, size: int = IMAGE_SIZE,
                 variant: str = "standard") -> Scene:
    """Draw one scene of class ``class_index``: its key concept plus each shared one with p = 1/2."""
    check_variant(variant)
    if not 0 <= class_index < len(CLASSES):
        raise ConceptsError(f"class index {class_index} out of range 0..{len(CLASSES) - 1}")
    present = [CLASSES[class_index][1]] + [s for s in SHARED if rng.random() < SHARED_PROBABILITY]
    order = rng.permutation(len(present))
    present = [present[i] for i in order]
    img = _background(rng, size)
    labels = np.zeros((size, size), dtype=np.uint8)
    subtypes = np.zeros((size, size), dtype=np.uint8) if variant == "subtypes" else None
    for name, (cy, cx, r) in zip(present, _place(len(present), rng, size)):
        _draw(name, img, labels, cy, cx, r, rng, subtypes)
    return Scene(np.round(img).astype(np.uint8), labels, class_index, present, subtypes)


def generate(n_per_class: int, seed: int = 0, size: int = IMAGE_SIZE, variant: str = "standard") -> Iterator[Scene]:
    """Yield ``n_per_class`` scenes of every class, class by class; deterministic from ``seed``."""
    for c in range(len(CLASSES)):
        rng = np.random.default_rng([seed, c])
        for _ in range(n_per_class):
            yield render_scene(c, rng, size, variant)


def generate_arrays(n_per_class: int, seed: int = 0, size: int = IMAGE_SIZE, variant: str = "standard"):
    """All scenes as arrays: images (N,S,S,3) uint8, labels (N,S,S) uint8, classes (N,) int64."""
    scenes = list(generate(n_per_class, seed, size, variant))
    images = np.stack([s.image for s in scenes])
    labels = np.stack([s.labels for s in scenes])
    classes = np.array([s.class_index for s in scenes], dtype=np.int64)
    return images, labels, classes


# ---------------------------------------------------------------------------------------
# on disk

DEFINITION_FILE = "synthetic.json"


def write_dataset(out: str | os.PathLike, n_per_class: int, seed: int = 0, progress: bool = True,
                  variant: str = "standard") -> Path:
    """Write ``out/images/<class>/<class>_<i>.png``, ``out/masks/<class>/<same stem>.npz``
    (``labels`` (S,S) uint8, and ``subtypes`` in the ``subtypes`` variant) and ``out/synthetic.json``.
    Returns ``out``."""
    from PIL import Image
    from tqdm.auto import tqdm

    out = Path(out)
    folders = class_names()
    for folder in folders:
        (out / "images" / folder).mkdir(parents=True, exist_ok=True)
        (out / "masks" / folder).mkdir(parents=True, exist_ok=True)
    counters = [0] * len(folders)
    scenes = generate(n_per_class, seed, variant=variant)
    for scene in tqdm(scenes, total=n_per_class * len(folders), desc="synthetic images", disable=not progress):
        c = scene.class_index
        stem = f"{folders[c]}_{counters[c]:04d}"
        counters[c] += 1
        Image.fromarray(scene.image).save(out / "images" / folders[c] / f"{stem}.png")
        extra = {} if scene.subtypes is None else {"subtypes": scene.subtypes}
        np.savez_compressed(out / "masks" / folders[c] / f"{stem}.npz", labels=scene.labels,
                            present=np.array(scene.present), **extra)
    meta = definition(variant) | {"seed": seed, "n_per_class": n_per_class}
    (out / DEFINITION_FILE).write_text(json.dumps(meta, indent=2))
    return out


def find_dataset_root(image_path: str | os.PathLike) -> Path | None:
    """The synthetic data set folder that holds ``image_path`` (the one with ``synthetic.json``)."""
    p = Path(image_path).resolve()
    for parent in p.parents:
        if (parent / DEFINITION_FILE).is_file():
            return parent
    return None


def load_mask(image_path: str | os.PathLike, key: str = "labels") -> np.ndarray:
    """The (S,S) uint8 label map of a synthetic image written by :func:`write_dataset` (``key='subtypes'``: its
    sub-type map, ``subtypes`` variant)."""
    p = Path(image_path).resolve()
    root = find_dataset_root(p)
    if root is None:
        raise ConceptsError(f"{image_path} is not inside a synthetic data set (no {DEFINITION_FILE} above it)")
    rel = p.relative_to(root / "images")
    mask = root / "masks" / rel.with_suffix(".npz")
    if not mask.is_file():
        raise ConceptsError(f"mask {mask} of {image_path} is missing")
    with np.load(mask) as data:
        if key not in data:
            raise ConceptsError(f"{mask} has no {key!r} map (sub-types: a data set of `concepts synth --variant "
                                "subtypes`)")
        return data[key]


def load_definition(root: str | os.PathLike) -> dict:
    path = Path(root) / DEFINITION_FILE
    if not path.is_file():
        raise ConceptsError(f"{path} not found: not a synthetic data set written by `concepts synth`")
    return json.loads(path.read_text())


def sample_sheet(path: str | os.PathLike, n_per_class: int = 4, seed: int = 0) -> Path:
    """A PNG with ``n_per_class`` scenes per class (one row per class), each next to its label map."""
    from PIL import Image

    palette = np.array([(40, 40, 40), (255, 255, 255), (160, 160, 160), (255, 150, 200), *COLOURS.values()],
                       dtype=np.uint8)
    rows = []
    for c in range(len(CLASSES)):
        rng = np.random.default_rng([seed, c])
        cells = []
        for _ in range(n_per_class):
            scene = render_scene(c, rng)
            gap = np.full((IMAGE_SIZE, 2, 3), 255, np.uint8)
            cells += [scene.image, gap, palette[scene.labels], np.full((IMAGE_SIZE, 8, 3), 255, np.uint8)]
        rows += [np.concatenate(cells, axis=1), np.full((4, sum(x.shape[1] for x in cells), 3), 255, np.uint8)]
    sheet = np.concatenate(rows, axis=0)
    path = Path(path)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(path)
    return path
