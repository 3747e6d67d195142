"""Text cleaning and drop reasons (pure functions)."""

from __future__ import annotations

import pytest
from pipe_embed.pipeline.compose.cleaning import clean_text, drop_reason
from pipe_embed.pipeline.compose.splits import split_of
from pipe_embed.pipeline.core.pairs import anchor_id, doc_id, normalize_key


@pytest.mark.parametrize("raw, expected", [
    ("  A  piece\n\tthat moves ", "A piece that moves"),
    ("<b>bold</b> and <a href='x'>link</a>", "bold and link"),
    ("rook &amp; king &lt;castle&gt;", "rook & king <castle>"),
    ("A move.[1] Another.[23]", "A move. Another."),
    ("Claim [citation needed] here", "Claim here"),
    ("Note.[a][note 2]", "Note."),
    ("Cafe\u0301", "Café"),  # NFC
    ("non\u00a0breaking", "non breaking"),
    ("word , spaced .", "word, spaced."),
    ("", ""),
])
def test_clean_text(raw: str, expected: str):
    assert clean_text(raw) == expected


def test_clean_text_keeps_ordinary_brackets():
    assert clean_text("an array [of] items") == "an array [of] items"


def test_drop_reasons():
    kw = dict(min_anchor_chars=1, min_positive_chars=5, max_anchor_chars=10, max_positive_chars=20)
    assert drop_reason("", "long enough", **kw) == "empty_anchor"
    assert drop_reason("a", "", **kw) == "empty_positive"
    assert drop_reason("a", "abc", **kw) == "positive_too_short"
    assert drop_reason("a" * 11, "long enough", **kw) == "anchor_too_long"
    assert drop_reason("a", "x" * 21, **kw) == "positive_too_long"
    assert drop_reason("a", "long enough", **kw) is None


def test_ids_are_stable():
    assert doc_id("text") == doc_id("text") and doc_id("text") != doc_id("Text")
    assert anchor_id("Rook") == anchor_id(" rook ") and anchor_id("rook") != anchor_id("king")
    assert normalize_key("  The\tROOK ") == "the rook"


def test_split_is_deterministic_and_roughly_proportional():
    anchors = [f"term {i}" for i in range(4000)]
    splits = [split_of(a, 0.1, 0.2, seed=1) for a in anchors]
    assert splits == [split_of(a, 0.1, 0.2, seed=1) for a in anchors]
    assert 0.07 < splits.count("dev") / 4000 < 0.13
    assert 0.17 < splits.count("test") / 4000 < 0.23
    assert split_of("Term 5", 0.1, 0.2, 1) == split_of("term 5", 0.1, 0.2, 1)
    assert splits != [split_of(a, 0.1, 0.2, seed=2) for a in anchors]


def test_control_characters_and_lone_surrogates_are_removed():
    assert clean_text("Ro\x00ok\x07 \x1b[1mbold\x7f \x85 end\ud800") == "Rook [1mbold end"
    assert clean_text("tab\tand\nnewline\r\nkept as spaces") == "tab and newline kept as spaces"
    assert clean_text("zero\u200bwidth\u2060joined\ufeff") == "zerowidthjoined"
    assert clean_text("caf\u00e9 \u0645\u200c\u0646") == "caf\u00e9 \u0645\u200c\u0646"  # ZWNJ is a letter's shape
