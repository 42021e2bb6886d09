"""Fixtures of the atlas tests: a fabricated run (edge cases) and the lead's real run when it is complete."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from atlas_fakerun import make_fake_run

CHROMIUM = Path(os.environ.get("CONCEPTS_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """One headless chromium for the session's browser tests (skipped without /usr/bin/chromium or playwright)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory) -> tuple[Path, dict]:
    """A fabricated run (3 classes, one named with markup, one photo missing, one image skipped)."""
    root = tmp_path_factory.mktemp("fake_run")
    truth = make_fake_run(root)
    return root, truth


@pytest.fixture(scope="session")
def fake_atlas(fake_run) -> Path:
    """The atlas of the fabricated run, built once (with sheets)."""
    from concepts.atlas import build_atlas

    run, _ = fake_run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_atlas(run, top_k=4, progress=False).parent


def complete_real_run(request) -> Path:
    """The lead's ``real_run`` with every stage done, or a skip saying what is missing."""
    run = request.getfixturevalue("real_run")
    for folder in ("activations", "concepts", "importance"):
        if not any((run / folder).glob("*.h5")):
            pytest.skip(f"real_run has no {folder}/ yet (that stage has not landed)")
    return run


@pytest.fixture(scope="session")
def real_atlas(request) -> Path:
    """The atlas of the lead's real run (2 Imagenette classes x 8 images), built once."""
    from concepts.atlas import build_atlas

    run = complete_real_run(request)
    return build_atlas(run, top_k=4, progress=False).parent


@pytest.fixture(params=["fake", "real"])
def any_atlas(request) -> tuple[Path, dict]:
    """(site, truth read back from the run's files) for the fabricated run and the real run."""
    from atlas_fakerun import truth_from_files

    site = request.getfixturevalue(f"{request.param}_atlas")
    return site, truth_from_files(site.parent)


@pytest.fixture(scope="session")
def real_export(request, tmp_path_factory) -> Path:
    """The exports of the lead's real run (the atlas's numbers are checked against them)."""
    from concepts.export import export_run

    run = complete_real_run(request)
    return export_run(run, out=tmp_path_factory.mktemp("real_export") / "exports", progress=False)


@pytest.fixture(scope="session")
def dataset_atlas(real_run_dataset) -> Path:
    """The atlas of the dataset-scope real run (a 12-atom NMF dictionary shared by 2 classes, 6 atoms each), its
    dictionary's index paged 5 atoms a page."""
    from concepts.atlas import build_atlas

    return build_atlas(real_run_dataset, top_k=4, atoms_per_page=5, progress=False).parent


#: the layers of ``real_run_layers``: the default cut (the run's main layer) and an earlier, signed block output
LAYERS = ("features", "blocks.5")


@pytest.fixture(scope="session")
def real_run_layers(val50, tmp_path_factory) -> Path:
    """2 Imagenette classes x 3 images extracted at two layers in one pass (RUN/ and RUN/layers/blocks.5), both
    factorised (NMF at the ReLU'd default cut, Semi-NMF at the signed blocks.5) and explained (gradient x input)."""
    from concepts.extract import extract_run
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run

    run = tmp_path_factory.mktemp("real_run_layers") / "run"
    extract_run(val50, run, classes=["n01440764", "n03000684"], max_images=3, workers=0, progress=False,
                layer=list(LAYERS))
    factorize_run(run, method="nmf", n_concepts=4, seed=0, progress=False)
    factorize_run(run, layer=LAYERS[1], method="semi_nmf", n_concepts=4, seed=0, progress=False)
    for layer in LAYERS:
        importance_run(run, layer=layer, methods=["gradient"], progress=False)
    return run


@pytest.fixture(scope="session")
def layers_atlas(real_run_layers) -> Path:
    """The atlas of ``real_run_layers``: both layers (the main one at the root, blocks.5 in layers/blocks.5)."""
    from concepts.atlas import build_atlas

    return build_atlas(real_run_layers, top_k=3, progress=False).parent


@pytest.fixture
def page(browser):
    """A desktop page of the session's browser that collects console errors and failed requests (asserted empty)."""
    from test_atlas_browser import _page

    context, page = _page(browser)
    yield page
    assert not page.problems, page.problems
    context.close()


@pytest.fixture
def phone(browser):
    """The same at 390 px, 2x, touch."""
    from test_atlas_browser import _page

    context, page = _page(browser, width=390, device_scale_factor=2, is_mobile=True, has_touch=True)
    yield page
    assert not page.problems, page.problems
    context.close()
