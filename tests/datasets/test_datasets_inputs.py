"""Class discovery, label resolution and robust decoding."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from concepts.datasets import discover, load_image, read_labels_file, resolve_label, to_rgb
from concepts.errors import ConceptsError


def _photo(path, mode="RGB", size=(40, 30)):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    image = rgb.convert(mode) if mode != "RGB" else rgb
    image.save(path)
    return path


def test_folder_discovery_sorting_selection_and_cap(tmp_path):
    for cls in ["b", "a", ".hidden"]:
        (tmp_path / cls).mkdir()
        for i in [3, 1, 2]:
            _photo(tmp_path / cls / f"img{i}.png")
    found = discover(tmp_path)
    assert [c.class_id for c in found] == ["a", "b"]
    assert [f.name for f in found[0].files] == ["img1.png", "img2.png", "img3.png"]
    picked = discover(tmp_path, classes=["b"], max_images=2)
    assert [c.class_id for c in picked] == ["b"] and len(picked[0].files) == 2
    with pytest.raises(ConceptsError, match="unknown class 'zz'"):
        discover(tmp_path, classes=["zz"])
    with pytest.raises(ConceptsError, match="not found"):
        discover(tmp_path / "nope")


def test_list_file_with_header_and_relative_paths(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(3):
        _photo(tmp_path / "img" / f"{i}.png")
    (tmp_path / "list.csv").write_text("path,wnid\nimg/0.png,n01440764\nimg/1.png,7\nimg/2.png,n01440764\n")
    found = {c.class_id: c.files for c in discover(tmp_path / "list.csv")}
    assert set(found) == {"n01440764", "7"}
    assert [f.name for f in found["n01440764"]] == ["0.png", "2.png"]
    assert found["7"][0] == tmp_path / "img" / "1.png"
    (tmp_path / "list.txt").write_text("img/0.png 3\n# a comment\nimg/1.png 3\n")
    assert [len(c.files) for c in discover(tmp_path / "list.txt")] == [2]


def test_label_resolution(tmp_path):
    assert resolve_label("n01440764", 10).source == "predicted"  # WordNet ids mean ImageNet logits only
    tench = resolve_label("n01440764", 1000)
    assert (tench.index, tench.name, tench.source) == (0, "tench", "wordnet")
    parachute = resolve_label("n03888257", 1000)
    assert parachute.index == 701 and parachute.name == "parachute"
    assert resolve_label("42", 1000).index == 42 and resolve_label("42", 1000).source == "integer"
    (tmp_path / "labels.csv").write_text("folder,index\ncats,281\n")
    table = read_labels_file(tmp_path / "labels.csv")
    assert resolve_label("cats", 1000, table).index == 281 and resolve_label("cats", 1000, table).source == "labels"
    assert resolve_label("mystery", 1000).source == "predicted" and resolve_label("mystery", 1000).index is None
    with pytest.raises(ConceptsError):
        resolve_label("5000", 1000)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16", "1"])
def test_every_colour_mode_becomes_rgb(tmp_path, mode):
    ext = "tif" if mode in ("CMYK", "I;16") else "png"
    path = _photo(tmp_path / f"x.{ext}", mode=mode)
    image, data = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 30) and len(data) > 0


def test_transparent_pixels_composite_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_truncated_and_non_image_files_raise(tmp_path):
    path = _photo(tmp_path / "ok.jpg", size=(256, 256))
    data = path.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("not an image")
    for bad in ["cut.jpg", "notes.txt"]:
        with pytest.raises(Exception):
            load_image(tmp_path / bad)
