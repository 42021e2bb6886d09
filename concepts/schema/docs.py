"""``python -m concepts.schema.docs``: the contract tables of docs/ARCHITECTURE.md, made from the specs."""
from __future__ import annotations

from . import SPECS


def markdown() -> str:
    return "\n\n".join(spec.markdown() for spec in SPECS.values())


if __name__ == "__main__":  # pragma: no cover
    print(markdown())
