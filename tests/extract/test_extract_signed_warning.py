"""Issue 18: NMF on signed activations is said while the first class is still being extracted, after its first
batch and before its second (not once the whole extraction has run); one warning per class, none for Semi-NMF."""
from __future__ import annotations

import concepts.extract.stage as stage
from concepts.extract import extract_run
from concepts.models import load_split
from concepts.settings import RunConfig

TENCH = "n01440764"


def test_signed_activations_are_said_after_the_first_batch(val50, tmp_path, monkeypatch):
    split, info = load_split("vit_tiny_patch16_224", pretrained=False)  # tokens before the last block: signed
    calls = {"g": 0}
    g = split.g

    def counting_g(x):
        calls["g"] += 1
        return g(x)

    monkeypatch.setattr(split, "g", counting_g)
    said: list[tuple[int, str]] = []
    monkeypatch.setattr(stage, "say", lambda message, progress=True: said.append((calls["g"], message)))
    extract_run(val50, tmp_path, classes=[TENCH], max_images=4, batch_size=1, mode="patches", workers=0,
                progress=False, split=split, info=info)
    assert calls["g"] == 4  # four batches of one image
    signed = [(n, m) for n, m in said if "the activations at this cut are signed" in m]
    assert len(signed) == 1, said
    assert signed[0][0] == 1, f"said after {signed[0][0]} forward batches, not after the first"
    assert "'nmf'" in signed[0][1] and "semi_nmf" in signed[0][1]

    said.clear()
    semi = RunConfig().replace(**{"factorize.method": "semi_nmf"})
    extract_run(val50, tmp_path, config=semi, classes=[TENCH], max_images=4, batch_size=1, mode="patches",
                workers=0, progress=False, split=split, info=info, overwrite=True)
    assert not [m for _, m in said if "signed" in m]
