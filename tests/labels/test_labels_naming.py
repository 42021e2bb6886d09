"""Concept names from a vocabulary: on the synthetic set (``concepts synth``'s scenes, whose concepts are planted),
with a stub encoder that embeds each planted concept as a known vector (what a CLIP model does for what it
recognises), the crops -> embeddings -> centred scores -> top words chain recovers the exact planted name of every
planted concept; ``RUN/labels.csv`` overrides a name, and the exports carry concept_label, label_source and
label_score."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from concepts.evaluate import synthetic
from concepts.labels import label_run, read_vocabulary
from concepts.schema.labels import concept_labels, read_vocabulary_labels
from fake_artefacts import write_activations

SIZE, CROP, STRIDE, CELL = synthetic.IMAGE_SIZE, 16, 8, 8
PLANTED = list(synthetic.CONCEPTS)  # background + the 7 planted concepts
TEMPLATE = "a photo of {}."


def _fractions(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels.ravel(), minlength=len(PLANTED)) / labels.size


class PlantedEncoder:
    """Stands in for CLIP: a crop is the mix of the planted concepts it shows (read from the data set's masks, at
    the crop's box), each concept a known unit vector; a planted name is embedded as its concept's vector, any other
    word as a random one."""

    identity = {"name": "stub:planted-concepts"}

    def __init__(self, dim: int = 512, seed: int = 0):  # CLIP ViT-B: 512
        self.rng = np.random.default_rng(seed)
        self.basis = np.eye(dim)[: len(PLANTED)]
        self.dim = dim
        self.calls = 0

    def encode_images(self, crops):
        self.calls += len(crops)
        out = []
        for crop in crops:
            assert crop.input_size == SIZE and crop.image.size == (crop.box[2] - crop.box[0],) * 2
            x0, y0, x1, y1 = crop.box
            out.append(_fractions(synthetic.load_mask(crop.path)[y0:y1, x0:x1]) @ self.basis)
        return np.stack(out)

    def encode_texts(self, texts):
        out = []
        for text in texts:
            word = re.fullmatch(r"a photo of (.+)\.", text).group(1)
            vector = self.basis[PLANTED.index(word)] if word in PLANTED else self.rng.normal(size=self.dim)
            out.append(vector / np.linalg.norm(vector))
        return np.stack(out)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """The synthetic set's scenes, a perfect backbone (each row: the planted concepts' share of its crop) and the
    real NMF: every class's concepts are its planted ones."""
    from concepts.factorize import factorize_run
    from concepts.importance import importance_run

    root = synthetic.write_dataset(tmp_path_factory.mktemp("synth"), n_per_class=4, seed=0, progress=False)
    run = tmp_path_factory.mktemp("run")
    corners = range(0, SIZE - CROP + 1, STRIDE)
    boxes = np.array([(x, y, x + CROP, y + CROP) for y in corners for x in corners], np.int32)
    present = {}
    for index, folder in enumerate(synthetic.class_names()):
        paths = sorted(str(p) for p in (root / "images" / folder).glob("*.png"))
        masks = [synthetic.load_mask(p) for p in paths]
        rows = np.array([_fractions(m[y0:y1, x0:x1]) for m in masks for x0, y0, x1, y1 in boxes], np.float32)
        maps = np.array([[_fractions(m[i:i + CELL, j:j + CELL]) for i in range(0, SIZE, CELL)
                          for j in range(0, SIZE, CELL)] for m in masks], np.float32)
        write_activations(run, folder, maps, rows=rows, boxes=boxes, paths=paths, image_size=SIZE,
                          class_index=index, head="none", model="perfect-backbone",
                          preprocessing={"input_size": SIZE, "crop_pct": 1.0, "interpolation": "bicubic"})
        present[folder] = {PLANTED[label] for m in masks for label in np.unique(m) if label}
    factorize_run(run, method="nmf", n_concepts=4, seed=0, progress=False)
    importance_run(run, progress=False)  # no head: prevalence
    return run, present


@pytest.fixture(scope="module")
def named(synthetic_run, tmp_path_factory):
    run, present = synthetic_run
    vocab = tmp_path_factory.mktemp("vocab") / "words.txt"
    distractors = read_vocabulary()[:300]
    vocab.write_text("\n".join(["# planted concepts among common words", *distractors[:150], *PLANTED,
                                *distractors[150:]]) + "\n")
    encoder = PlantedEncoder()
    report = label_run(run, encoder=encoder, vocab=str(vocab), template=TEMPLATE, n_crops=4, min_crop=CROP,
                       progress=False)
    return run, present, report, encoder


def test_every_planted_concept_gets_its_exact_name(named):
    run, present, report, encoder = named
    assert set(report.words) == set(present) and report.unnamed == 0 and encoder.calls > 0
    for class_id, planted in present.items():
        best = report.words[class_id]
        assert all(len(pairs) == 5 and [s for _, s in pairs] == sorted((s for _, s in pairs), reverse=True)
                   for pairs in best)
        names = {pairs[0][0] for pairs in best}
        assert planted <= names, f"{class_id}: planted {sorted(planted)}, named {sorted(names)}"
        assert names <= set(PLANTED)  # never a distractor word


def test_manual_labels_override_and_the_exports_carry_the_names(named):
    from concepts.export import export_run

    run, present, report, _ = named
    (run / "labels.csv").write_text("class,concept,label\n0_zebra,1,zebra stripes (checked by hand)\n")
    meta, words = read_vocabulary_labels(run)
    assert meta["encoder"] == PlantedEncoder.identity and meta["vocab"]["n_words"] == 308
    labels = concept_labels(run, "0_zebra", 4)
    assert labels[1].source == "manual" and labels[1].label == "zebra stripes (checked by hand)"
    assert labels[0].source == "vocabulary" and labels[0].label == report.words["0_zebra"][0][0][0]
    table = pd.read_csv(export_run(run, formats=["csv"], progress=False) / "importances.csv", keep_default_na=False)
    assert set(table["method"]) == {"prevalence"}
    row = table[(table["class_id"] == "0_zebra") & (table["concept"] == 1)].iloc[0]
    assert row["label_source"] == "manual" and row["concept_label"] == "zebra stripes (checked by hand)"
    assert row["label_score"] == ""  # NaN: not a vocabulary score
    others = table[~((table["class_id"] == "0_zebra") & (table["concept"] == 1))]
    assert set(others["label_source"]) == {"vocabulary"}
    for _, row in others.iterrows():
        word, score = report.words[row["class_id"]][row["concept"]][0]
        assert row["concept_label"] == word and float(row["label_score"]) == pytest.approx(score, abs=1e-5)


def test_the_open_clip_encoder_names_from_a_local_checkpoint(synthetic_run, tmp_path, capsys):
    """The real encoder path (open_clip's preprocessing, tokenizer and towers) with a local checkpoint, through the
    command line; random weights, so only the shape of the result is checked."""
    open_clip = pytest.importorskip("open_clip", reason="open_clip is not installed (pip install open-clip-torch)")
    import json

    import torch

    from concepts.cli import main

    run, present = synthetic_run
    config = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16,
                                              "patch_size": 16},
              "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "concepts-test-label-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "concepts-test-label-clip.json")
    clip = open_clip.create_model("concepts-test-label-clip", pretrained=None)
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    (tmp_path / "words.txt").write_text("\n".join(read_vocabulary()[:40]) + "\n")
    assert main(["label", str(run), "--encoder", "open_clip:concepts-test-label-clip", "--checkpoint",
                 str(tmp_path / "clip.pt"), "--vocab", str(tmp_path / "words.txt"), "--top-words", "3",
                 "--classes", "0_zebra", "--min-crop", "16", "-q"]) == 0
    assert "label: 4 of 4 concepts of 1 class named" in capsys.readouterr().err
    meta, words = read_vocabulary_labels(run)
    assert meta["encoder"]["weights"] == f"checkpoint:{(tmp_path / 'clip.pt').resolve()}"
    assert meta["vocab"]["n_words"] == 40 and set(meta["classes"]) == {"0_zebra"}
    assert len(words) == 4 and all(len(pairs) == 3 for pairs in words.values())
    assert {w for pairs in words.values() for w, _ in pairs} <= set(read_vocabulary()[:40])
