"""The vocabulary that names concepts: the bundled default (see ``VOCABULARY.md`` beside it) or a user's file."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConceptsError

DEFAULT_VOCABULARY = Path(__file__).resolve().parent / "vocabulary.txt"


def read_vocabulary(path: str | Path | None = None) -> list[str]:
    """One word or phrase per line (``#`` comments and blank lines skipped, duplicates dropped, order kept)."""
    path = Path(path) if path is not None else DEFAULT_VOCABULARY
    if not path.is_file():
        raise ConceptsError(f"vocabulary file not found: {path}")
    words = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    words = list(dict.fromkeys(w for w in words if w and not w.startswith("#")))
    if len(words) < 2:
        raise ConceptsError(f"{path} holds {len(words)} word(s); a vocabulary needs at least 2")
    return words
