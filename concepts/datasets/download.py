"""Download, verify and unpack a public image dataset (Imagenette) for users who are online.

Nothing in the pipeline downloads at run time; this is an explicit, separate step
(``python data/download_imagenette.py``). The archive is streamed to ``*.part`` while its SHA-256 is computed,
compared with the expected digest when one is given (``--sha256`` or the digest recorded next to the archive by an
earlier verified download), renamed into place, and unpacked with path-traversal and link checks; the unpacked tree
is then checked to hold the ten Imagenette class folders with images.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..schema.hashing import file_sha256 as sha256_of
from ..errors import ConceptsError

IMAGENETTE_URLS = {
    "full": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
    "320": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
    "160": "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
}
IMAGENETTE_WNIDS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
                    "n03425413", "n03445777", "n03888257"]
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True) -> Path:
    """Stream ``url`` to ``dest`` (via ``dest.part``), checking the SHA-256 when given. Returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise ConceptsError(f"download of {url} failed ({exc}); are you online?") from exc
    got = digest.hexdigest()
    if sha256 is not None and got != sha256.lower():
        part.unlink(missing_ok=True)
        raise ConceptsError(f"checksum mismatch for {url}: sha256 {got}, expected {sha256}")
    os.replace(part, dest)
    return dest


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpack a tar archive into ``dest``, refusing absolute paths, '..' and links that leave ``dest``."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            target = (dest / member.name).resolve()
            if os.path.isabs(member.name) or not str(target).startswith(str(dest) + os.sep) and target != dest:
                raise ConceptsError(f"{archive}: unsafe path {member.name!r} in the archive")
            if member.issym() or member.islnk():
                link = (target.parent / member.linkname).resolve()
                if not str(link).startswith(str(dest) + os.sep):
                    raise ConceptsError(f"{archive}: link {member.name!r} points outside the folder")
            if member.isdev():
                raise ConceptsError(f"{archive}: device file {member.name!r} in the archive")
        tar.extractall(dest, members=members)
    return dest


def verify_class_tree(root: str | os.PathLike, wnids: list[str] = IMAGENETTE_WNIDS) -> dict[str, int]:
    """Check that ``root/<wnid>/`` holds images for every wnid; returns the image count per class."""
    root = Path(root)
    counts = {}
    for wnid in wnids:
        folder = root / wnid
        n = sum(1 for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else 0
        if n == 0:
            raise ConceptsError(f"{root} is not a complete Imagenette split: no images in {wnid}/")
        counts[wnid] = n
    return counts


def prepare_imagenette(dest: str | os.PathLike, size: str = "160", sha256: str | None = None,
                       url: str | None = None, progress: bool = True) -> Path:
    """Download (if needed), verify and unpack Imagenette into ``dest``; returns the ``val`` class folder.

    Without ``sha256``, the digest of the first complete download is recorded in ``<archive>.sha256`` and later
    runs verify against it.
    """
    dest = Path(dest)
    url = url or IMAGENETTE_URLS[size]
    archive = dest / Path(url).name
    record = archive.with_name(archive.name + ".sha256")
    expected = sha256 or (record.read_text().split()[0] if record.exists() else None)
    download(url, archive, expected, progress)
    if not record.exists():
        record.write_text(f"{sha256_of(archive)}  {archive.name}\n")
    top = dest / archive.name.split(".")[0]
    if not (top / "val").is_dir():
        tmp = dest / (top.name + ".unpacking")
        shutil.rmtree(tmp, ignore_errors=True)
        safe_extract(archive, tmp)
        inner = tmp / top.name if (tmp / top.name).is_dir() else tmp
        os.replace(inner, top)
        shutil.rmtree(tmp, ignore_errors=True)
    for split in ("train", "val"):
        verify_class_tree(top / split)
    return top / "val"
