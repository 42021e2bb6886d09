"""Lazy package attributes: ``from concepts.factorize import NMF`` imports ``concepts.factorize.nmf`` only then.

Packages list their public names in a table; importing a package (or a light submodule such as a registry) then
costs nothing, so the CLI starts fast and listing a registry does not load torch.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` from ``{name: "relative.module"}``."""

    def __getattr__(name: str) -> Any:
        if name in table:
            module = importlib.import_module(table[name], package)
            value = getattr(module, name)
            importlib.import_module(package).__dict__[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__
