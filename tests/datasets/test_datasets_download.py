"""The download/verify/unpack logic, on local archives served through file:// URLs."""
from __future__ import annotations

import io
import tarfile

import pytest
from PIL import Image

from concepts.datasets.download import (IMAGENETTE_WNIDS, download, prepare_imagenette, safe_extract, sha256_of,
                                        verify_class_tree)
from concepts.errors import ConceptsError


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _imagenette_archive(path, wnids=IMAGENETTE_WNIDS):
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "val"):
            for wnid in wnids:
                _add(tar, f"imagenette2-160/{split}/{wnid}/{wnid}_1.JPEG", _jpeg())
    return path


def test_prepare_downloads_verifies_records_and_unpacks(tmp_path):
    archive = _imagenette_archive(tmp_path / "imagenette2-160.tgz")
    url = archive.as_uri()
    val = prepare_imagenette(tmp_path / "dest", url=url, progress=False)
    assert val == tmp_path / "dest" / "imagenette2-160" / "val"
    assert verify_class_tree(val) == {w: 1 for w in IMAGENETTE_WNIDS}
    record = (tmp_path / "dest" / "imagenette2-160.tgz.sha256").read_text().split()[0]
    assert record == sha256_of(archive)
    # a second run verifies against the recorded digest and does not unpack again
    assert prepare_imagenette(tmp_path / "dest", url=url, progress=False) == val


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path):
    archive = _imagenette_archive(tmp_path / "a.tgz")
    with pytest.raises(ConceptsError, match="checksum mismatch"):
        download(archive.as_uri(), tmp_path / "out" / "a.tgz", sha256="0" * 64, progress=False)
    assert not list((tmp_path / "out").iterdir())
    got = download(archive.as_uri(), tmp_path / "out" / "a.tgz", sha256=sha256_of(archive), progress=False)
    assert sha256_of(got) == sha256_of(archive)


def test_unreachable_url_is_a_clear_error(tmp_path):
    with pytest.raises(ConceptsError, match="download of"):
        download((tmp_path / "missing.tgz").as_uri(), tmp_path / "x.tgz", progress=False)


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_path_traversal_is_refused(tmp_path, name):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, name, b"x")
    with pytest.raises(ConceptsError, match="unsafe path"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("data/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tar.addfile(info)
    with pytest.raises(ConceptsError, match="points outside"):
        safe_extract(archive, tmp_path / "dest")


def test_incomplete_tree_is_reported(tmp_path):
    archive = _imagenette_archive(tmp_path / "imagenette2-160.tgz", wnids=IMAGENETTE_WNIDS[:9])
    with pytest.raises(ConceptsError, match="n03888257"):
        prepare_imagenette(tmp_path / "dest", url=archive.as_uri(), progress=False)
