"""Counts in the one-line summaries agree with their noun: "1 class", "1 image", never "1 classes" / "1 images"
(issue 18 found "1 images" in a warning); the summaries are built from the reports the stages return."""
from __future__ import annotations

import re
from pathlib import Path

from concepts.labels.stage import LabelReport
from concepts.pipeline.run import PipelineResult
from concepts.runner import StageReport
from concepts.probe.stage import ProbeReport
from concepts.text import plural

SINGULAR_WITH_PLURAL = re.compile(r"(?<![\d.])1 (classes|images|concepts)\b")


def test_plural():
    assert [plural(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert plural(1, "class") == "1 class" and plural(3, "class") == "3 classes"


def test_one_class_summaries_say_one_class():
    texts = [
        LabelReport(Path("L"), {"a": [[("stripe", 0.3)]]}).summary(),
        ProbeReport(Path("P"), "written", 0.5, n_train=1, n_test=1, per_class={"a": {}}).summary(),
        PipelineResult(Path("R"), ["a"], processed=["a"], tasks=1).summary(),
        PipelineResult(Path("R"), ["a"], nothing_to_do=True).summary(),
    ]
    for text in texts:
        assert not SINGULAR_WITH_PLURAL.search(text), text
    assert "1 concept of 1 class named" in texts[0]
    assert "probe: 1 class, 1 image fitted" in texts[1]
    assert "done: 1 class processed" in texts[2] and "all 1 class and" in texts[3]
    many = PipelineResult(Path("R"), ["a", "b"], processed=["a", "b"], tasks=1).summary()
    assert "done: 2 classes processed" in many


def test_stage_report_says_was_for_one_stale_class():
    one = StageReport("factorize", written=["a"], stale=["a"]).summary()
    two = StageReport("factorize", written=["a", "b"], stale=["a", "b"]).summary()
    assert "1 written (1 was stale)" in one and "2 written (2 were stale)" in two
