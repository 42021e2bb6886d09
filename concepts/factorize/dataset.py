"""Stage 2 at dataset scope, the computation: one dictionary fitted on the rows of many classes, and each class's
view of it.

* :func:`fit_dictionary`: streamed methods (sparse autoencoders, mini-batch NMF / Semi-NMF) train on every row of
  every class through a :class:`~concepts.factorize.stream.RowStream` (contiguous blocks, a bounded shuffle buffer,
  never the whole cache in memory); the other methods fit on a uniform sample of at most ``max_rows`` rows.
* :func:`class_view`: a class's concepts are the atoms it uses most (coefficient mass over its rows); its rows'
  coefficients on them are streamed to the class's concepts file.
* :class:`AtomView`: the estimator of a class view (the shared estimator restricted to the class's atoms), what
  ``load_concepts`` gives back and what the importance stage uses, unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ClassSkipped, ConceptsError
from ..schema import ActivationCache, ConceptsWriter
from .metrics import StreamingDiagnostics

#: provenance that must agree between the classes whose rows one dictionary is fitted on
SAME_ACROSS_CLASSES = ("model", "weights_sha256", "layer", "layout", "mode", "patch_size", "n_channels",
                       "preprocessing", "precision")


def streams(estimator) -> bool:
    """Whether the method trains from a stream of batches (else it fits on a sample)."""
    from .minibatch_nmf import MiniBatchNMF
    from .sae.base import SparseAutoencoder

    return isinstance(estimator, (SparseAutoencoder, MiniBatchNMF))


def check_compatible(caches: Sequence[ActivationCache]) -> None:
    """One dictionary needs rows of one model, layer and sampling: refuse a mix, naming the differing files."""
    first = caches[0]
    for cache in caches[1:]:
        differ = [k for k in SAME_ACROSS_CLASSES if cache.attrs.get(k) != first.attrs.get(k)]
        if differ:
            key = differ[0]
            raise ConceptsError(f"a shared dictionary needs the activations of one model, layer and sampling, but "
                                f"{cache.path.name} has {key} {cache.attrs.get(key)!r} and {first.path.name} has "
                                f"{first.attrs.get(key)!r}; extract them alike or fit per class (--scope class)")


@dataclass
class DictionaryFit:
    estimator: Any
    n_rows: int
    n_fit_rows: int
    mode: str  # "stream" or "sample"


def fit_dictionary(caches: Sequence[ActivationCache], estimator, *, max_rows: int, buffer_rows: int,
                   seed: int) -> DictionaryFit:
    """Fit ``estimator`` on the rows of ``caches`` (streamed, or a uniform sample of ``max_rows`` rows)."""
    from .stream import RowStream

    check_compatible(caches)
    batch = int(getattr(estimator, "batch_size", 4096) or 4096)
    stream = RowStream(list(caches), batch_size=batch, buffer_rows=int(buffer_rows), seed=int(seed))
    n_rows = int(stream.n_rows)
    if n_rows == 0:
        raise ConceptsError("no cached rows to fit a dictionary on (every image was skipped?)")
    if streams(estimator):
        estimator.fit(stream)
        return DictionaryFit(estimator, n_rows, int(getattr(estimator, "n_rows_seen_", n_rows) or n_rows), "stream")
    rows = stream.sample(min(int(max_rows), n_rows), seed=int(seed))
    estimator.fit(rows)
    return DictionaryFit(estimator, n_rows, len(rows), "sample")


def _mass(cache: ActivationCache, estimator, chunk_rows: int) -> np.ndarray:
    mass = np.zeros(np.asarray(estimator.components_).shape[0], np.float64)
    for block in cache.iter_rows(chunk_rows=chunk_rows, dtype=np.float32):
        mass += np.abs(np.asarray(estimator.transform(block), dtype=np.float64)).sum(axis=0)
    return mass


def class_view(cache: ActivationCache, estimator, writer: ConceptsWriter, *, n_atoms: int,
               chunk_rows: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The class's ``n_atoms`` most used atoms and its rows' coefficients on them (written to ``writer``).

    Returns ``(atoms, mass, diagnostics)``: atom indices by decreasing mass, the class's mass on every atom, and
    the diagnostics of the view (relative error of the rows rebuilt from those atoms only, sparsity ...).
    """
    if cache.n_rows == 0:
        raise ClassSkipped("no cached rows (every image was skipped?)")
    mass = _mass(cache, estimator, int(chunk_rows))
    atoms = np.argsort(-mass, kind="stable")[: int(n_atoms)]
    view = AtomView(estimator, atoms)
    W = view.components_
    writer.write_components(W)
    diagnostics = None
    offset = 0
    for block in cache.iter_rows(chunk_rows=int(chunk_rows), dtype=np.float32):
        U = view.transform(block)
        if diagnostics is None:
            diagnostics = StreamingDiagnostics(W.shape[0], float(np.abs(U).max(initial=0.0)) or 1.0)
        writer.write_coefficients(offset, U)
        diagnostics.add(block, U, np.asarray(view.inverse_transform(U), dtype=np.float64))
        offset += len(block)
    return atoms.astype(np.int64), mass, diagnostics.result(W)


class AtomView:
    """A shared dictionary's estimator restricted to some of its atoms (a class's concepts).

    ``transform`` gives the coefficients of those atoms (the shared estimator's codes, columns ``atoms``),
    ``inverse_transform`` rebuilds rows from them alone (the others at 0; an SAE's decoder bias or PCA's mean
    included), ``components_`` are the atoms. The importance stage uses it as any concept extractor.
    """

    def __init__(self, base, atoms):
        self.base = base
        self.atoms = np.asarray(atoms, dtype=np.int64)
        self.components_ = np.asarray(base.components_, dtype=np.float32)[self.atoms]
        self.method = getattr(base, "method", type(base).__name__)
        self.n_components_ = len(self.atoms)

    @property
    def device_(self):
        return self.base.device_

    def transform(self, X):
        return np.asarray(self.base.transform(X), dtype=np.float32)[:, self.atoms]

    def inverse_transform(self, U):
        U = np.asarray(U, dtype=np.float32)
        full = np.zeros((U.shape[0], np.asarray(self.base.components_).shape[0]), np.float32)
        full[:, self.atoms] = U
        return np.asarray(self.base.inverse_transform(full), dtype=np.float32)

    def __repr__(self) -> str:
        return f"AtomView({type(self.base).__name__}, {len(self.atoms)} of {self.base.components_.shape[0]} atoms)"
