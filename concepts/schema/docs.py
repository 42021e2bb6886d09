"""``python -m concepts.schema.docs [--write docs/ARCHITECTURE.md]``: the contract tables of the architecture page,
made from the specs (``--write`` replaces them in the page, between its two markers)."""
from __future__ import annotations

import sys
from pathlib import Path

from . import RUN_FILE_SPECS, SPECS

BEGIN = "<!-- schema tables: begin (made by `python -m concepts.schema.docs --write docs/ARCHITECTURE.md`) -->"
END = "<!-- schema tables: end -->"


def markdown() -> str:
    return "\n\n".join(spec.markdown() for spec in (*SPECS.values(), *RUN_FILE_SPECS.values()))


def write(page: Path) -> None:
    text = page.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    page.write_text(f"{head}{BEGIN}\n\n{markdown()}\n\n{END}{tail}")


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write(Path(sys.argv[2]))
    else:
        print(markdown())
