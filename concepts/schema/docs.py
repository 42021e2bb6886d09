"""``python -m concepts.schema.docs``: the contract tables of docs/ARCHITECTURE.md, made from the specs."""
from __future__ import annotations

from . import RUN_FILE_SPECS, SPECS


def markdown() -> str:
    return "\n\n".join(spec.markdown() for spec in (*SPECS.values(), *RUN_FILE_SPECS.values()))


if __name__ == "__main__":  # pragma: no cover
    print(markdown())
