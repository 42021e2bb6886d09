"""The quickstart notebook runs from top to bottom and shows what it promises."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3").execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "tiger cat" in text and "summed contribution" in text and "relative error" in text
    assert "Sobol total index share" in text
    assert "shared dictionary: topk_sae, 128 atoms" in text and "of 6 classes" in text  # the dataset-scope section
    assert text.count("largest shares: atom ") == 6
    assert any("image/png" in o.get("data", {}) for o in outputs), "the atlas sheet is not displayed inline"
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "importance" in html and "rank" in html
