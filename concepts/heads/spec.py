"""The ``--head`` value taken apart (no torch here: the settings and the CLI read it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConceptsError

HEAD_KINDS = ("model", "none", "probe", "zeroshot")
DEFAULT_HEAD = "model"


@dataclass(frozen=True)
class HeadSpec:
    """``kind`` (model | none | probe | zeroshot) and, for probe and zeroshot, the ``source`` file."""

    kind: str
    source: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> "HeadSpec":
        text = (text or DEFAULT_HEAD).strip()
        kind, _, source = text.partition(":")
        if kind not in HEAD_KINDS or (kind in ("probe", "zeroshot")) != bool(source):
            raise ConceptsError(f"model.head: {text!r} is not allowed; expected model | none | probe:FILE | "
                                "zeroshot:FILE")
        return cls(kind, str(Path(source).expanduser().resolve()) if source else None)

    @property
    def default(self) -> bool:
        return self.kind == DEFAULT_HEAD

    def request(self) -> str:
        """The head as asked for, with an absolute path (what ``concepts run`` compares without loading)."""
        return self.kind if self.source is None else f"{self.kind}:{self.source}"

    def file(self) -> Path:
        path = Path(self.source or "")
        if not path.is_file():
            raise ConceptsError(f"--head {self.kind}: file not found: {path}")
        return path
