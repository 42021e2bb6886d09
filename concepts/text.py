"""Words for messages: counts with their noun in the right number."""
from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``'1 image'``, ``'2 images'``, ``'0 images'`` (``plural_form`` for irregular nouns: ``'classes'``)."""
    count = int(count)
    if count == 1:
        return f"1 {noun}"
    return f"{count} {plural_form or (noun + 'es' if noun.endswith(('s', 'x', 'ch', 'sh')) else noun + 's')}"
