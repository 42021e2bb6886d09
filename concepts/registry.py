"""Registries by name (timm / overcomplete style): names are listed without importing what they name.

A :class:`Registry` maps a name to a ``"module:attribute"`` path; the object is imported on first use. So the
settings, the CLI and ``--help`` list every method without loading torch, and each method exists in one place.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Iterator

from .errors import ConceptsError


class Registry(Mapping):
    """``name -> object`` with lazily imported values and optional aliases (case-insensitive)."""

    def __init__(self, kind: str, paths: dict[str, str], aliases: dict[str, str] | None = None):
        self.kind = kind
        self._paths = dict(paths)
        self._aliases = {k.lower(): v for k, v in (aliases or {}).items()}
        self._loaded: dict[str, Any] = {}

    def names(self) -> tuple[str, ...]:
        return tuple(self._paths)

    def normalize(self, name: str) -> str:
        """The registered name for ``name`` (case and aliases), or ``name`` lowered when unknown."""
        key = str(name).strip().lower()
        return self._aliases.get(key, key)

    def canonical(self, name: str) -> str:
        """The registered name for ``name``; a one-line ConceptsError naming the choices when unknown."""
        key = self.normalize(name)
        if key not in self._paths:
            raise ConceptsError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._paths)}")
        return key

    def register(self, name: str, path: str) -> None:
        """Add ``name`` (``"module:attribute"``); for plug-ins and tests."""
        self._paths[name] = path
        self._loaded.pop(name, None)

    def __getitem__(self, name: str) -> Any:
        key = self.canonical(name)
        if key not in self._loaded:
            module, _, attr = self._paths[key].partition(":")
            self._loaded[key] = getattr(importlib.import_module(module), attr)
        return self._loaded[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.normalize(name) in self._paths
