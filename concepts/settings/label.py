"""``label``: concept names from a vocabulary scored by a vision-language encoder (``concepts label RUN``)."""
from __future__ import annotations

from typing import Union

from pydantic import field_validator

from .base import BAD, Section, setting


class LabelSettings(Section):
    """``concepts label``: each concept's top crops are embedded by the encoder's image tower, every vocabulary word
    by its text tower; both are centred (on the class mean, on the vocabulary mean) and the best words kept."""

    section = "label"

    vocab: Union[str, None] = setting(None, "vocabulary file, one word or phrase per line (default: the bundled "
                                            "vocabulary) (concepts label)", run_flag="--label-vocab")
    encoder: Union[str, None] = setting(None, "encoder open_clip:ARCH[@TAG] (default: the run's model when it is an "
                                              "open_clip model) (concepts label)", run_flag="--label-encoder")
    checkpoint: Union[str, None] = setting(None, "local weights of the encoder (concepts label)",
                                           run_flag="--label-checkpoint")
    template: str = setting("a photo of {}.", "text prompt of each word; {} is the word (concepts label)",
                            run_flag="--label-template")
    n_crops: int = setting(8, "top crops embedded per concept, one per image (concepts label)", ge=1,
                           run_flag="--label-crops")
    min_crop: int = setting(64, "smallest crop side in model-input pixels; feature cells are grown to it "
                                "(concepts label)", ge=1, run_flag="--label-min-crop")
    top_words: int = setting(5, "words kept per concept (concepts label)", ge=1, run_flag="--label-top-words")
    batch_size: int = setting(64, "crops or words per forward pass of the encoder (concepts label)", ge=1,
                              hashed=False, run_flag="--label-batch-size")

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        if value.count("{}") != 1:
            raise ValueError(BAD)
        return value
