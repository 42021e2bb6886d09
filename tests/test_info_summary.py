"""`concepts info` reports what the run's files hold."""
from __future__ import annotations

import h5py
import numpy as np

from concepts.cli import main
from concepts.info import run_summary


def test_info_matches_the_files(real_run_any, capsys):
    summary = run_summary(real_run_any)
    assert summary["stages"]["extract"] == 2 and summary["provenance"]["model"] == "tf_efficientnet_lite0"
    entry = summary["classes"]["n01440764"]
    assert entry["class_name"] == "tench" and entry["rows"] == 8 * 16 and entry["channels"] == 1280
    if (real_run_any / "importance").is_dir():
        with h5py.File(real_run_any / "importance" / "n01440764.h5", "r") as handle:
            share = handle["sobol/share"][()]
        assert entry["importance"]["sobol"][0][0] == int(np.argmax(share))
        assert entry["concepts"]["n_concepts"] == 6
    assert main(["info", str(real_run_any)]) == 0
    out = capsys.readouterr().out
    assert "'tench' -> logit 0 (wordnet)" in out and "rows 128 x 1280" in out
    if (real_run_any / "importance").is_dir():
        assert "importance[sobol] (share of the summed Sobol indices): #" in out and "fidelity: logit h(UW)/h(A)" in out
        from concepts.evidence import class_diagnostics
        from concepts.evidence.numbers import pct
        from concepts.schema.classdata import load_class

        d = class_diagnostics(load_class(real_run_any, "n01440764", with_maps=False, with_coefficients=False))
        assert summary["classes"]["n01440764"]["diagnostics"]["explained_share"] == d.explained_share
        assert f"explained: concepts {pct(d.explained_share)} of the logit" in out  # as the atlas and exports
        assert f"[{pct(d.residual_share)}]" in out and "fit: rel.error" in out and "iterations" in out
        assert "what the figures mean:" in out and "residual_share: what the concepts miss" in out


def test_info_on_a_folder_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "holds no activations" in capsys.readouterr().err
