"""Concept names (``concepts label RUN``): score a vocabulary with a vision-language encoder.

For every concept of every class, its top crops (the rows with the largest coefficients, one per image, grown to
``min_crop`` pixels) are embedded by the encoder's image tower; every vocabulary word, put in ``template``, by its
text tower. As CLIP-Dissect and SpLiCE do, both sides are centred before they are compared: a concept's mean
embedding on the class mean (the mean of every crop embedded for the class, so that what all its concepts share,
the class itself, does not name each of them), the words on the vocabulary's mean (the modality gap). The cosine of
the two centred vectors scores each word; the ``top_words`` best are kept (``RUN/labels/vocabulary.csv``), and
``RUN/labels.csv`` overrides them by hand (:mod:`concepts.schema.labels`).

An encoder is any object with ``encode_images(crops) -> (n, E)`` and ``encode_texts(texts) -> (m, E)`` and an
``identity`` dict (:class:`~concepts.labels.encoders.OpenClipEncoder` is the real one, through open_clip).
"""
from .encoders import CropRef, OpenClipEncoder, load_encoder
from .naming import score_words, top_words
from .stage import LabelReport, label_run
from .vocabulary import DEFAULT_VOCABULARY, read_vocabulary

__all__ = ["CropRef", "OpenClipEncoder", "load_encoder", "score_words", "top_words", "LabelReport", "label_run",
           "DEFAULT_VOCABULARY", "read_vocabulary"]
