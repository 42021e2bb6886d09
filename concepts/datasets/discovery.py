"""Find the classes and images of an input: a folder of class folders, or a text file of paths with labels."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConceptsError


@dataclass
class ImageClass:
    """One class of the input: its id (folder name or label) and its image files, in sorted order."""

    class_id: str
    files: list[Path] = field(default_factory=list)


def _read_list_file(path: Path) -> dict[str, list[Path]]:
    """``path label`` per line (space, tab or comma separated; a ``path,label`` header is allowed)."""
    classes: dict[str, list[Path]] = {}
    base = path.parent
    with open(path, newline="") as handle:
        first = handle.readline()
        handle.seek(0)
        delimiter = "," if "," in first else ("\t" if "\t" in first else None)
        reader = csv.reader(handle, delimiter=delimiter) if delimiter else (line.split() for line in handle)
        for number, row in enumerate(reader, 1):
            row = [c.strip() for c in row if c.strip()]
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise ConceptsError(f"{path}:{number}: expected 'path label', got {' '.join(row)!r}")
            if number == 1 and row[0].lower() in ("path", "file", "filename", "image"):
                continue
            file = Path(row[0])
            classes.setdefault(row[1], []).append(file if file.is_absolute() else base / file)
    return classes


def discover(
    images: str | os.PathLike, classes: list[str] | None = None, max_images: int | None = None
) -> list[ImageClass]:
    """List the classes of ``images`` (sorted by id), optionally picking ``classes`` and capping images per class.

    Every regular, non-hidden file in a class folder is listed; files that are not readable images are
    skipped later, at decoding, and recorded as skipped in the cache.
    """
    root = Path(images)
    if not root.exists():
        raise ConceptsError(f"image folder or list not found: {root}")
    if root.is_file():
        found = _read_list_file(root)
    else:
        found = {}
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            # dangling links are listed (and recorded as skipped, with the reason), not silently dropped
            found[sub.name] = [f for f in sub.iterdir() if (f.is_file() or f.is_symlink()) and not f.is_dir()
                               and not f.name.startswith(".")]
        if not found:
            raise ConceptsError(f"{root} has no class sub-folders (expected {root}/<class>/<image files>)")
    if classes:
        unknown = [c for c in classes if c not in found]
        if unknown:
            avail = ", ".join(sorted(found)[:12]) + (" ..." if len(found) > 12 else "")
            raise ConceptsError(f"unknown class {unknown[0]!r} in {root}; available: {avail}")
        selected = [c for c in sorted(found) if c in set(classes)]
    else:
        selected = sorted(found)
    out = []
    for class_id in selected:
        files = sorted(found[class_id], key=lambda p: str(p))
        if max_images is not None:
            files = files[: max(0, int(max_images))]
        out.append(ImageClass(class_id, files))
    return out
