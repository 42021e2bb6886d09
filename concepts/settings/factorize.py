"""``factorize``: the concept dictionary of each class (stage 2)."""
from __future__ import annotations

from typing import Any, Literal, Union

from ..factorize.registry import METHODS
from .base import Section, setting


#: the settings of the recursive step (hashed when ``recursive`` is on)
RECURSIVE = ("recursive", "depth", "sub_concepts", "threshold_percentile", "sub_layer")


class FactorizeSettings(Section):
    """Stage 2: a concept dictionary per class, ``A ~ U W`` (or one shared by the classes: ``scope='dataset'``).

    The method's own parameters (``params``, and the common ones given their own flags) are checked against the
    estimator's declared constraints when the stage starts; the resolved estimator parameters enter the config
    hash, so that a changed default is noticed.
    """

    section = "factorize"

    scope: Literal["class", "dataset"] = setting("class", "class: a dictionary per class (CRAFT); dataset: one "
                                                          "dictionary shared by the classes (SAEs), each class "
                                                          "viewing the atoms it uses")
    method: str = setting("nmf", "concept extraction method", choices=METHODS.names, normalize=METHODS.normalize)
    n_concepts: int = setting(10, "concepts per class (dataset scope: atoms of the shared dictionary)", flag="--concepts",
                              ge=1)
    seed: int = setting(0, "random seed of the factorization", ge=0)
    solver: Union[str, None] = setting(None, "NMF solver: hals (default) or mu", hashed=False)
    init: Union[str, None] = setting(None, "NMF init: nndsvda (default), nndsvd, nndsvdar or random", hashed=False)
    max_iter: Union[int, None] = setting(None, "iteration limit of the method (default: the method's)", ge=1,
                                         hashed=False)
    tol: Union[float, None] = setting(None, "stopping tolerance of the method (default: the method's)", gt=0,
                                      hashed=False)
    concepts_per_class: int = setting(10, "dataset scope: concepts of each class (the atoms it uses most)", ge=1)
    buffer_rows: int = setting(262_144, "dataset scope: rows shuffled together when a method streams the cache "
                                        "(the memory bound)", ge=1)
    max_rows: int = setting(200_000, "fit on a uniform sample of this many rows when a class has more "
                                     "(every row still gets its coefficients)", ge=1)
    chunk_rows: int = setting(65536, "rows per block when coefficients are streamed", ge=1, hashed=False,
                              stage_cli=False)
    # CRAFT's recursive decomposition. Not hashed as fields: the factorize stage hashes them only with
    # --recursive on (``RECURSIVE``), so that files made without it keep their config hash.
    recursive: bool = setting(False, "split every concept into sub-concepts: its rows at or above the percentile "
                                     "are factorised again", hashed=False)
    depth: int = setting(1, "levels of sub-concepts (--recursive)", ge=1, le=4, hashed=False)
    sub_concepts: int = setting(4, "sub-concepts per concept (--recursive)", ge=2, hashed=False)
    threshold_percentile: float = setting(90.0, "a concept's rows at or above this percentile of its coefficient "
                                                "are re-factorised (--recursive)", ge=0, lt=100, hashed=False)
    sub_layer: Union[str, None] = setting(None, "cached layer of the sub-concepts, for the same crops (default: the "
                                                "concepts' own layer; --recursive)", hashed=False, metavar="MODULE")
    params: dict[str, Any] = setting(default_factory=dict, help="any other parameter of the method, KEY=VALUE",
                                     flag="--param", metavar="KEY=VALUE", hashed=False)

    def recursive_config(self) -> dict[str, Any]:
        """The recursive settings that decide a concepts file (empty without --recursive)."""
        if not self.recursive:
            return {}
        return {name: getattr(self, name) for name in RECURSIVE}

    def estimator_params(self) -> dict[str, Any]:
        """The keyword arguments of the estimator: ``params`` plus the common parameters that are set."""
        out = dict(self.params)
        for name in ("solver", "init", "max_iter", "tol"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out
