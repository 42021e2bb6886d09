"""The package's shape rule (docs/ARCHITECTURE.md): no function over ~60 lines without a reason stated in its
docstring ("... on purpose: ..."). (Only the schema opens HDF5 files: tests/schema/test_schema_contract.py.)"""
from __future__ import annotations

import ast
from pathlib import Path

import concepts

PACKAGE = Path(concepts.__file__).parent
LIMIT = 60


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(PACKAGE.parent), node


def test_long_functions_say_why():
    long = [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, node in _functions()
            if node.end_lineno - node.lineno + 1 > LIMIT and "on purpose" not in (ast.get_docstring(node) or "")]
    assert not long, "functions over 60 lines without a stated reason: " + "; ".join(long)

