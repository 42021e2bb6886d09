"""The fviz stage on a fabricated run (tiny CNN adopted by the model cache, real image files): the artefact's
contract, the reader the atlas uses, lineage (resume, stale, refused settings), a spectrum file; and on the shared
real run with the bundled EfficientNet-Lite0: every concept's image excites its own concept (slow)."""
from __future__ import annotations

import numpy as np
import pytest

from concepts.errors import ConceptsError, ConfigMismatchError
from concepts.schema import FVIZ, SPECS, open_run, read_fviz, stage_path
from fviz_fakerun import CLASS_INDEX, adopt, fabricate, make_split

TINY = dict(steps=6, crops=2, image_size=48, crop_min=0.6, crop_max=0.8, lr=0.2, batch=8, device="cpu")


@pytest.fixture()
def fake_run(tmp_path):
    split = make_split()
    nmf = fabricate(tmp_path, "a", split)
    return tmp_path, split, nmf, adopt(tmp_path, "a", split)


def test_stage_writes_the_contract_and_the_reader_gives_images_in_bank_order(fake_run):
    from concepts.fviz import fviz_run, load_fviz

    run, split, nmf, models = fake_run
    report = fviz_run(run, models=models, progress=False, **TINY)
    assert report.written == ["a"] and SPECS["fviz"] is FVIZ
    record = load_fviz(run, "a")
    r = nmf.components_.shape[0]
    assert record.targets == [f"concept:{k}" for k in range(r)] + [f"logit:{CLASS_INDEX}"]
    assert record.concept_images().shape == (r, 48, 48, 3) and record.concept_images().dtype == np.uint8
    assert record.concept_transparency().shape == (r, 48, 48)
    image, alpha = record.concept(2)
    assert np.array_equal(image, record.images[2]) and np.array_equal(alpha, record.transparency[2])
    assert record.logit_image[0].shape == (48, 48, 3)
    attrs = record.attrs
    for key in ("steps", "crops", "seed", "crop_min", "crop_max", "noise", "image_size", "model", "layer",
                "weights_sha256", "spectrum", "spectrum_sha256", "creation_id", "inputs", "format_version"):
        assert key in attrs, key
    assert attrs["spectrum"] == "images" and attrs["spectrum_images"] == 6 and attrs["stage"] == "fviz"
    assert set(attrs["inputs"]) == {"extract", "factorize"}
    # the measures are those of the images: own coefficient, percentile among the class's rows, excitation
    coefficients = open_run(run).concepts("a").coefficients
    for k in range(r):
        share = 100 * (coefficients[:, k] < record.coefficients[k, k]).mean()
        assert record.percentile[k] == pytest.approx(share, abs=1e-4)
    assert np.isnan(record.percentile[-1])
    p99 = np.percentile(coefficients, 99, axis=0)
    np.testing.assert_allclose(record.p99, p99, rtol=1e-5)
    expected = [bool(record.coefficients[k, k] > p99[k] and record.coefficients[k].argmax() == k) for k in range(r)]
    assert record.excites().tolist() == expected and attrs["excited"] == sum(expected)
    assert record.curve.shape == (r + 1, TINY["steps"]) and np.isfinite(record.objective).all()
    assert read_fviz(stage_path(run, "fviz", "a"), images=False).images.shape[0] == 0


def test_stage_resumes_refuses_other_settings_and_recomputes_stale_files(fake_run):
    from concepts.fviz import fviz_run

    run, split, nmf, models = fake_run
    fviz_run(run, models=models, progress=False, **TINY)
    path = stage_path(run, "fviz", "a")
    before = path.stat().st_mtime_ns
    again = fviz_run(run, models=models, progress=False, **{**TINY, "batch": 2})  # batch does not change results
    assert again.done == ["a"] and path.stat().st_mtime_ns == before
    with pytest.raises(ConfigMismatchError, match="steps 6 -> 7"):
        fviz_run(run, models=models, progress=False, **{**TINY, "steps": 7})
    fabricate(run, "a", split, seed=1)  # the concepts are recomputed: the visualisations are stale
    stale = fviz_run(run, models=models, progress=False, **TINY)
    assert stale.stale == ["a"] and path.stat().st_mtime_ns != before
    with pytest.raises(ConceptsError, match="no concepts for class"):
        fviz_run(run, models=models, progress=False, classes=["zz"], **TINY)


def test_a_spectrum_file_is_used_and_recorded(fake_run, tmp_path):
    from concepts.fviz import fviz_run, load_fviz

    run, split, nmf, models = fake_run
    spectrum = tmp_path / "spectrum.npy"
    np.save(spectrum, np.abs(np.fft.rfft2(np.random.default_rng(0).random((3, 40, 40)))))
    fviz_run(run, models=models, progress=False, spectrum=str(spectrum), logit=False, **TINY)
    record = load_fviz(run, "a")
    assert record.attrs["spectrum"] == f"file:{spectrum.resolve()}" and record.logit_image is None
    assert record.spectrum["magnitude"].shape == (3, 40, 21)
    np.save(spectrum, np.ones((40, 21)))
    with pytest.raises(ConfigMismatchError):  # other content, same path: other settings
        fviz_run(run, models=models, progress=False, spectrum=str(spectrum), logit=False, **TINY)
    with pytest.raises(ConceptsError, match="not found"):
        fviz_run(run, models=models, progress=False, spectrum=str(tmp_path / "none.npy"), **TINY)


@pytest.mark.slow
def test_every_concept_image_excites_its_own_concept_on_a_real_run(real_run, tmp_path):
    """The issue's proof on a small real run (bundled EfficientNet-Lite0, Imagenette photos): for at least 90% of
    the concepts the image's own coefficient exceeds the 99th percentile of that concept over the class's crops
    and is the largest of its coefficients; the images are not flat."""
    import shutil

    from concepts.cli import main
    from concepts.fviz import load_fviz

    run = tmp_path / "run"
    shutil.copytree(real_run, run)
    code = main(["fviz", str(run), "--classes", "n01440764", "--steps", "64", "--crops", "2", "--image-size", "256",
                 "--crop-min", "0.7", "--crop-max", "0.9", "--no-logit", "--device", "cpu", "--quiet"])
    assert code == 0
    record = load_fviz(run, "n01440764")
    assert record.excites().mean() >= 0.9, (record.percentile, record.coefficients.argmax(1))
    assert (record.images.reshape(len(record.images), -1, 3).std(axis=1) > 20).all()  # not a flat colour
