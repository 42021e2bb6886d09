"""The synthetic generator: masks match images, classes hold their concepts, determinism."""
import json

import numpy as np
import pytest

from concepts.evaluate import synthetic as syn


@pytest.fixture(scope="module")
def scenes():
    return list(syn.generate(12, seed=3))


def test_masks_match_pixels(scenes):
    for s in scenes:
        img, lab = s.image.astype(int), s.labels
        for name in s.present:
            k = syn.CONCEPT_INDEX[name]
            inside = img[lab == k]
            assert len(inside) > 50, name  # every planted object is visible
            if name in syn.COLOURS:
                assert (inside == syn.COLOURS[name]).all(), name
            else:  # textures: only black and white ink, both present
                is_black = (inside == syn.BLACK).all(axis=1)
                is_white = (inside == syn.WHITE).all(axis=1)
                assert (is_black | is_white).all(), name
                assert is_black.mean() > 0.05 and is_white.mean() > 0.05, name
        absent = set(syn.CONCEPTS[1:]) - set(s.present)
        for name in absent:
            assert not (lab == syn.CONCEPT_INDEX[name]).any()
        # background pixels are mid-grey noise: never an object colour, never black or white
        bg = img[lab == 0]
        assert bg.min() >= 70 and bg.max() <= 180
        for colour in list(syn.COLOURS.values()) + [syn.BLACK, syn.WHITE]:
            assert not (bg == colour).all(axis=1).any()


def test_class_definition(scenes):
    for s in scenes:
        key = syn.CLASSES[s.class_index][1]
        assert key in s.present
        others = {k for _, k in syn.CLASSES} - {key}
        assert not others & set(s.present)  # no other class's key
        assert set(s.present) - {key} <= set(syn.SHARED)
    # the shared concepts appear in every class
    for c in range(len(syn.CLASSES)):
        present = {n for s in scenes if s.class_index == c for n in s.present}
        assert present & set(syn.SHARED)


def test_deterministic_from_seed():
    a = syn.generate_arrays(3, seed=5)
    b = syn.generate_arrays(3, seed=5)
    c = syn.generate_arrays(3, seed=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_write_dataset_round_trip(tmp_path):
    from PIL import Image

    syn.write_dataset(tmp_path, 2, seed=1, progress=False)
    meta = json.loads((tmp_path / syn.DEFINITION_FILE).read_text())
    assert [c["folder"] for c in meta["classes"]] == syn.class_names()
    images, labels, _ = syn.generate_arrays(2, seed=1)
    files = sorted((tmp_path / "images").glob("*/*.png"))
    assert len(files) == 2 * len(syn.CLASSES)
    for i, path in enumerate(files):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), images[i])
        np.testing.assert_array_equal(syn.load_mask(path), labels[i])
        assert syn.find_dataset_root(path) == tmp_path.resolve()
