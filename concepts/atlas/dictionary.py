"""The pages of a dataset-scope run's shared dictionary (``RUN/dictionary/shared.h5``): an index of every atom
(paged, ``atoms_per_page`` a page, most used atoms first) and one page per atom with its top crops across the
classes, the classes that use it most (their share of its coefficient mass) and its importance in each class that
has it among its concepts.

Nothing is recomputed: a class's view of the dictionary (its concepts file) holds the atoms it has as concepts
(``state/atoms``) and its coefficient mass on every atom (``state/mass``); the crops and importances are those of
the class pages (:mod:`concepts.atlas.classpage`), gathered class by class while the site is written
(:class:`DictionaryPages`), so an atom's crops are the top crops of the classes that have it among their concepts,
merged by coefficient (the coefficients of one dictionary are comparable across classes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtefactError
from ..evidence import METHOD_LABELS
from ..schema import RunFolder
from ..schema.hdf5 import peek_attrs
from .views import ClassView, CropView, Value

#: classes listed per atom by their share of its mass
TOP_CLASSES = 10
#: crops shown per atom on the index
INDEX_CROPS = 3


@dataclass
class AtomClass:
    """One class's use of one atom."""

    class_name: str
    class_id: str
    class_page: str
    mass: float  # the class's coefficient mass on the atom
    share: float  # its share of the atom's mass over the atlas's classes (1 = 100%)
    rank: int  # the atom's rank among the class's atoms by mass (1 = the one it uses most)
    concept: int | None = None  # the atom's position among the class's concepts, when it is one
    concept_page: str | None = None
    values: dict[str, Value] = field(default_factory=dict)  # method -> the concept's value (class page's)


@dataclass
class AtomCrop:
    class_name: str
    class_id: str
    concept_page: str
    crop: CropView


@dataclass
class AtomView:
    index: int
    page: str
    position: int  # 1 = the atom with the largest mass
    mass: float  # its coefficient mass summed over the atlas's classes
    mass_share: float  # of the mass of every atom
    n_users: int  # classes with a positive mass on it
    listing: str  # the index page that lists it
    top: list[AtomClass] = field(default_factory=list)  # the classes that use it most
    concepts: list[AtomClass] = field(default_factory=list)  # every class that has it among its concepts
    crops: list[AtomCrop] = field(default_factory=list)
    visualisation: Any = None  # the atom's feature visualisation (a views.Visualisation), when a class page has it
    prev_page: str | None = None
    next_page: str | None = None


@dataclass
class DictionaryView:
    attrs: dict
    n_atoms: int
    n_classes: int
    methods: list[tuple[str, str]]  # (name, label) of the importance methods of the classes
    atoms: list[AtomView]  # in listing order
    listings: list[tuple[str, list[AtomView]]]  # (url, atoms) of each index page

    @property
    def method(self) -> str:
        return str(self.attrs.get("method", "?"))


def listing_url(page: int) -> str:
    return "dictionary/index.html" if page == 0 else f"dictionary/index-{page + 1}.html"


@dataclass
class _Concept:
    class_pos: int
    concept: int
    page: str
    values: dict[str, Value]
    crops: list[CropView]
    visualisation: Any = None


class DictionaryPages:
    """Gathers, class by class, what the dictionary's pages show (:meth:`add` after each class view is built),
    then makes their views (:meth:`view`)."""

    def __init__(self, attrs: dict, folder: Path | None = None):
        self.attrs, self.folder = dict(attrs), RunFolder(folder) if folder is not None else None
        self.n_atoms = int(self.attrs["n_concepts"])
        self.classes: list[tuple[str, str, str]] = []  # (name, id, page)
        self.mass: list[np.ndarray] = []  # per class, (K,) float32
        self.concepts: dict[int, list[_Concept]] = {}
        self.methods: dict[str, str] = {}

    @classmethod
    def of_run(cls, folder: Path) -> "DictionaryPages":
        """For the classes of the (layer's) run folder ``folder``, whose shared dictionary it holds."""
        return cls(peek_attrs(RunFolder(folder).dictionary_file), folder)

    def atoms_of(self, class_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(atoms, mass)`` of a class's view: its concepts as atom indices, its mass on every atom."""
        record = self.folder.concepts(class_id, coefficients=False)
        state = record.state or {}
        if "atoms" not in state or "mass" not in state:
            raise ArtefactError(f"{record.path}: a class of a dataset-scope run without state/atoms and state/mass "
                                "(not a view of the shared dictionary); rerun `concepts factorize --scope dataset`")
        atoms, mass = np.asarray(state["atoms"], np.int64), np.asarray(state["mass"], np.float64)
        if mass.shape != (self.n_atoms,) or len(atoms) != record.n_concepts or \
                (len(atoms) and (atoms.min() < 0 or atoms.max() >= self.n_atoms)):
            raise ArtefactError(f"{record.path}: its view does not fit the shared dictionary of {self.n_atoms} atoms "
                                f"(atoms {atoms.tolist()[:5]}..., mass {mass.shape}); rerun `concepts factorize "
                                "--scope dataset`")
        return atoms, mass

    def add(self, view: ClassView, atoms: np.ndarray, mass: np.ndarray) -> None:
        pos = len(self.classes)
        self.classes.append((view.class_name, view.class_id, view.page))
        self.mass.append(np.asarray(mass, np.float32))
        for name, method in view.methods.items():
            self.methods.setdefault(name, method.label)
        for concept in view.concepts:
            atom = int(atoms[concept.index])
            self.concepts.setdefault(atom, []).append(
                _Concept(pos, concept.index, concept.page, dict(concept.values), list(concept.crops),
                         getattr(concept, "visualisation", None)))

    def view(self, per_page: int, top_k: int) -> DictionaryView:
        mass = np.stack(self.mass) if self.mass else np.zeros((0, self.n_atoms), np.float32)
        mass = np.where(np.isfinite(mass), np.maximum(mass, 0), 0).astype(np.float32)  # (C, K)
        total = mass.sum(axis=0, dtype=np.float64)
        grand = float(total.sum())
        order = np.lexsort((np.arange(self.n_atoms), -total))  # most mass first, then by index
        # each class's rank of each atom by mass (1 = the atom it uses most; ties by atom index)
        ranks = np.empty(mass.shape, np.int32)
        np.put_along_axis(ranks, np.argsort(-mass, axis=1, kind="stable"),
                          np.arange(1, self.n_atoms + 1, dtype=np.int32)[None, :], axis=1)
        atoms = []
        for position, k in enumerate(order):
            k = int(k)
            view = AtomView(index=k, page=f"dictionary/a{k}.html", position=position + 1, mass=float(total[k]),
                            mass_share=float(total[k] / grand) if grand > 0 else 0.0,
                            n_users=int((mass[:, k] > 0).sum()), listing=listing_url(position // per_page))
            concepts = {c.class_pos: c for c in self.concepts.get(k, [])}
            users = [int(c) for c in np.argsort(-mass[:, k], kind="stable") if mass[c, k] > 0]
            for c in users[:TOP_CLASSES]:
                view.top.append(self._use(c, k, mass, total, ranks, concepts.get(c)))
            view.concepts = sorted((self._use(c.class_pos, k, mass, total, ranks, c) for c in concepts.values()),
                                   key=lambda u: (-u.share, u.class_name))
            crops = [(cr.coefficient, c.class_pos, AtomCrop(*self.classes[c.class_pos][:2], c.page, cr))
                     for c in concepts.values() for cr in c.crops]
            crops.sort(key=lambda t: (-t[0], t[1], t[2].crop.rank))
            view.crops = [t[2] for t in crops[:top_k]]
            view.visualisation = next((c.visualisation for c in self.concepts.get(k, []) if c.visualisation), None)
            atoms.append(view)
        for before, view, after in zip([None] + atoms[:-1], atoms, atoms[1:] + [None]):
            view.prev_page = before.page if before else None
            view.next_page = after.page if after else None
        listings = [(listing_url(p), atoms[s:s + per_page]) for p, s in enumerate(range(0, len(atoms), per_page))]
        methods = [(m, METHOD_LABELS.get(m, label)) for m, label in self.methods.items()]
        return DictionaryView(self.attrs, self.n_atoms, len(self.classes), methods, atoms,
                              listings or [(listing_url(0), [])])

    def _use(self, c: int, k: int, mass, total, ranks, concept: _Concept | None) -> AtomClass:
        name, class_id, page = self.classes[c]
        use = AtomClass(name, class_id, page, float(mass[c, k]),
                        float(mass[c, k] / total[k]) if total[k] > 0 else 0.0, int(ranks[c, k]))
        if concept is not None:
            use.concept, use.concept_page, use.values = concept.concept, concept.page, concept.values
        return use
