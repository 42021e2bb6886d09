"""Importing concepts and calling its library functions change nothing process-wide: not the allocator, not the
global torch RNG, not torch's thread count, not the Hugging Face hub's offline switch. The CLI entry point does
its one-time set-up itself."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    import concepts.runtime as runtime
    state = lambda: {"rng": torch.random.get_rng_state().sum().item(), "threads": torch.get_num_threads(),
                     "hf_env": os.environ.get("HF_HUB_OFFLINE"), "tuned": runtime.allocator_tuned()}
    before = state()
    import concepts, concepts.factorize, concepts.importance, concepts.extract, concepts.atlas, concepts.export
    after_import = state()
    from concepts.models import load_split
    split, info = load_split(device="cpu")                      # the bundled model
    load_split("resnet18", device="cpu", pretrained=False)      # a random initialisation
    from concepts.extract import extract_run
    extract_run(sys.argv[1], sys.argv[2], classes=["n01440764"], max_images=2, threads=1, workers=0,
                progress=False, split=split, info=info)
    import numpy as np
    from concepts.factorize import make_estimator
    rows = np.abs(np.random.default_rng(0).normal(size=(40, 16))).astype(np.float32)
    make_estimator("nmf", 3, device="cpu", random_state=0).fit(rows).transform(rows)  # one thread while it runs
    after_calls = state()
    import huggingface_hub.constants as hub
    print(json.dumps({"before": before, "after_import": after_import, "after_calls": after_calls,
                      "hub_offline": bool(hub.HF_HUB_OFFLINE)}))
""")


def test_library_calls_leave_the_process_as_they_found_it(val50, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_OFFLINE"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(val50), str(tmp_path / "run")], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["before"] == out["after_import"] == out["after_calls"]
    assert out["before"]["tuned"] is False and out["before"]["hf_env"] is None and out["hub_offline"] is False


def test_the_cli_entry_point_tunes_the_allocator():
    code = "import concepts.cli, concepts.runtime as r; concepts.cli.main(['info', '/nonexistent']); " \
           "print(r.allocator_tuned())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc allocator tuning is Linux-only")
    assert done.stdout.strip().splitlines()[-1] == "True"
