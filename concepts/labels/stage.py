"""``concepts label RUN``, orchestration: crops and words through the encoder, scores, ``RUN/labels/``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConceptsError
from ..runtime import thread_limit
from ..schema import RunFolder, file_sha256, identity
from ..schema.classdata import list_run_classes, load_class
from ..schema.labels import labels_folder, write_vocabulary_labels
from ..settings import RunConfig, stage_config
from ..text import plural
from .crops import concept_crops
from .naming import score_words, top_words
from .vocabulary import DEFAULT_VOCABULARY, read_vocabulary


@dataclass
class LabelReport:
    """What ``concepts label`` wrote: class -> per concept the best (word, score) pairs ([] when unnamed)."""

    path: Path
    words: dict[str, list[list[tuple[str, float]]]] = field(default_factory=dict)

    @property
    def n_concepts(self) -> int:
        return sum(len(v) for v in self.words.values())

    @property
    def unnamed(self) -> int:
        return sum(1 for v in self.words.values() for w in v if not w)

    def summary(self) -> str:
        named = self.n_concepts - self.unnamed
        return (f"label: {named} of {plural(self.n_concepts, 'concept')} of {plural(len(self.words), 'class')} named in "
                f"{self.path}"
                + (f" ({self.unnamed} without a crop to show)" if self.unnamed else ""))


def label_run(run: str | os.PathLike, *, config: RunConfig | None = None, encoder=None, progress: bool = True,
              **settings: Any) -> LabelReport:
    """Name every concept of ``run`` (see :mod:`concepts.labels`). ``encoder``: an object with ``encode_images``,
    ``encode_texts`` and ``identity`` (default: ``label.encoder``, or the run's model when it is an open_clip
    model). ``settings``: keywords of the ``label`` section, ``classes``, ``device`` and ``threads``."""
    from tqdm.auto import tqdm

    cfg = stage_config("label", config, **settings)
    s = cfg.label
    folder = RunFolder(run)
    found = list_run_classes(folder.path, classes=list(cfg.data.classes) if cfg.data.classes else None)
    if not found:
        raise ConceptsError(f"{run} has no class with both activations and concepts; nothing to name")
    vocab_path = Path(s.vocab) if s.vocab else DEFAULT_VOCABULARY
    words = read_vocabulary(vocab_path)
    with thread_limit(cfg.executor.threads):
        encoder = encoder or default_encoder(cfg, folder, found[0][0])
        word_embeddings = encoder.encode_texts([s.template.format(w) for w in words])
        rows, named, report = [], {}, LabelReport(labels_folder(folder.path))
        for class_id, _ in tqdm(found, desc="label", unit="class", disable=not progress):
            data = load_class(folder.path, class_id, with_maps=False)
            best = name_class(folder.path, data, encoder, word_embeddings, words, s)
            report.words[data.class_id] = best
            named[data.class_id] = identity(data.concept_attrs)
            rows += [{"class_id": data.class_id, "concept": k, "rank": rank + 1, "word": word, "score": score}
                     for k, pairs in enumerate(best) for rank, (word, score) in enumerate(pairs)]
    meta = {"encoder": encoder.identity, "classes": named, "settings": s.hashed(),
            "vocab": {"path": str(vocab_path.resolve()), "sha256": file_sha256(vocab_path), "n_words": len(words),
                      "bundled": vocab_path.resolve() == DEFAULT_VOCABULARY}}
    write_vocabulary_labels(folder.path, rows, meta)
    return report


def name_class(run: Path, data, encoder, word_embeddings: np.ndarray, words: list[str], s) -> list[list]:
    """The best (word, score) pairs of every concept of one class ([] for a concept without crops)."""
    crops = concept_crops(run, data, s.n_crops, s.min_crop)
    flat = [c for per in crops for c in per]
    if not flat:
        return [[] for _ in crops]
    embedded = np.asarray(encoder.encode_images(flat), np.float64)
    embedded /= np.maximum(np.linalg.norm(embedded, axis=1, keepdims=True), 1e-12)
    means, start = [], 0
    for per in crops:
        means.append(embedded[start:start + len(per)].mean(axis=0) if per else None)
        start += len(per)
    present = [k for k, m in enumerate(means) if m is not None]
    scores = score_words(np.stack([means[k] for k in present]), embedded.mean(axis=0), word_embeddings)
    best = dict(zip(present, top_words(scores, words, s.top_words)))
    return [best.get(k, []) for k in range(len(crops))]


def default_encoder(cfg: RunConfig, folder: RunFolder, class_id: str):
    """``label.encoder`` (with ``label.checkpoint``), else the run's own model when it is an open_clip model."""
    from ..models.openclip import is_open_clip
    from .encoders import load_encoder

    device = None if cfg.model.device == "auto" else cfg.model.device
    s = cfg.label
    if s.encoder:
        return load_encoder(s.encoder, s.checkpoint, device=device, batch_size=s.batch_size)
    with folder.activations(class_id) as cache:
        attrs = dict(cache.attrs)
    if not is_open_clip(attrs.get("model")):
        raise ConceptsError(f"label.encoder: the run's model {attrs.get('model')!r} has no text tower; name an "
                            "encoder: --encoder open_clip:ViT-B-32@openai (or add --checkpoint PATH)")
    return load_encoder(attrs["model"], attrs.get("checkpoint") or None, device=device, batch_size=s.batch_size,
                        pretrained=attrs.get("weights") != "random")
