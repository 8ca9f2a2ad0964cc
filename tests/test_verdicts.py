"""The verdict record: words from a fixed list, a power for every judged verdict, and the table showing both."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from polybook.display import GLUED
from polybook.verdicts import WORDS, record_verdict, separation

ROOT = Path(__file__).resolve().parent.parent


def test_separation_is_the_gap_in_standard_errors():
    # Fails when the power is not |a - b| / se, or a zero s.e. hides a real gap.
    assert separation(-1.0, -0.81, 0.05) == pytest.approx(3.8)
    assert separation(2.0, 2.0, 0.0) == 0.0
    assert separation(2.0, 1.0, 0.0) == math.inf
    for bad in [(1.0, 0.0, -0.1), (float("nan"), 0.0, 1.0), (True, 0.0, 1.0), ("1", 0.0, 1.0)]:
        with pytest.raises(ValueError):
            separation(*bad)


def test_a_verdict_glues_its_word_measurement_and_power():
    # Fails when a verdict is glued without its power, or the weak-rule warning is lost.
    line = record_verdict("verdict_test_demo", "holds with a correction", "slope -0.90", 2.5)
    assert GLUED["verdict_test_demo"] == "slope -0.90"
    assert GLUED["verdict_test_demo_word"] == "holds with a correction"
    assert GLUED["verdict_test_demo_power"] == "2.5 s.e. (weak: below 3)"
    assert line == "verdict_test_demo: holds with a correction | slope -0.90 | power 2.5 s.e. (weak: below 3)"
    record_verdict("verdict_test_demo", "a finding", "fourth norm 0.62", None)
    assert GLUED["verdict_test_demo_power"] == "no rule (nothing judged)"


@pytest.mark.parametrize("word,power,needle", [
    ("mostly holds", 4.0, "verdict word must be one of"),
    ("holds", None, "needs the power of its rule"),
    ("does not hold here", None, "needs the power of its rule"),
    ("holds", -1.0, "power must be a number >= 0"),
    ("holds", float("nan"), "power must be a number >= 0"),
])
def test_a_verdict_without_a_known_word_or_a_power_is_refused(word, power, needle):
    # Fails when a chapter could glue a word outside the table's vocabulary, or judge without a power.
    with pytest.raises(ValueError, match=needle):
        record_verdict("verdict_test_demo", word, "x", power)
    with pytest.raises(ValueError, match="starts with 'verdict_'"):
        record_verdict("demo", "holds", "x", 4.0)


def test_every_row_of_the_verdict_table_shows_its_word_and_power():
    # Fails when a row of the introduction's table lacks the word or the power of its chapter's verdict,
    # or names a verdict whose three keys do not come from the same chapter.
    text = (ROOT / "book" / "intro.md").read_text()
    table = text[text.index("(verdict)="):text.index("## Two origin stories")]
    rows = [line for line in table.splitlines() if line.startswith("|") and "{glue:text}" in line]
    assert len(rows) >= 17, len(rows)
    for row in rows:
        keys = re.findall(r"\{glue:text\}`([\w.-]+)::(verdict_\w+?):s`", row)
        found = {key for _, key in keys}
        base = min(found, key=len)
        assert {base, f"{base}_word", f"{base}_power"} <= found, row
        assert len({nb for nb, _ in keys}) == 1, row
    assert set(WORDS) >= {"holds", "does not hold here", "unfinished", "a finding"}
