"""Text cleaning and drop reasons (pure functions)."""

from __future__ import annotations

import json
from collections import Counter

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


@pytest.mark.parametrize("raw", [
    "Write to <user@example.org> for a copy",
    "[x for x in xs if x <- 3 > 0]",
    "<g>",
    "a <- b and c -> d",
    "x<y and y>z",
    "the <tag> of an XML element",
    "this &notation and AT&T &bogus;",
])
def test_text_that_only_looks_like_html_is_kept(raw: str):
    counts: Counter[str] = Counter()
    assert clean_text(raw, counts) == raw
    assert counts["html_tags_removed"] == 0 and counts["entities_decoded"] == 0


def test_real_tags_and_entities_go_and_are_counted():
    counts: Counter[str] = Counter()
    text = ('<p class="def" data-x=\'1\'>A <b>rook</b>&nbsp;moves<br/> along files &amp; ranks.</p>'
            '<!-- note --><SPAN>Up</SPAN>[1] \x07')
    assert clean_text(text, counts) == "A rook moves along files & ranks. Up"
    assert counts == Counter({"html_tags_removed": 8, "entities_decoded": 2, "citations_removed": 1,
                              "control_chars_removed": 1})
    assert clean_text("&lt;g&gt; is a term", counts) == "<g> is a term"  # an escaped bracket is text


def test_compose_counts_its_cleaning(tmp_path):
    from pipe_embed.pipeline.compose.stage import ComposeConfig, run_compose
    from pipe_embed.pipeline.core.store import Store

    table = tmp_path / "g.csv"
    table.write_text("term,definition\n"
                     "<g>,A group element written in angle brackets in this glossary.\n"
                     "mail,Write to <user@example.org> or see <b>the list</b> &amp; its archive.\n")
    artifact = run_compose(Store(tmp_path / "data"), ComposeConfig(dev_fraction=0.0), inputs=[table]).artifact
    rows = [json.loads(line) for line in artifact.file("pairs.jsonl").read_text().splitlines()]
    assert {r["anchor"]: r["positive"] for r in rows} == {
        "<g>": "A group element written in angle brackets in this glossary.",
        "mail": "Write to <user@example.org> or see the list & its archive."}
    assert artifact.stats["cleaning"] == {"html_tags_removed": 2, "entities_decoded": 1, "citations_removed": 0,
                                          "control_chars_removed": 0}


def test_anchor_and_positive_from_the_same_column_are_refused():
    from pipe_embed.pipeline.compose.stage import ComposeConfig
    from pipe_embed.pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="fields 'anchor_col' and 'positive_col': both name the column 'term'"):
        ComposeConfig(anchor_col="term", positive_col="term").validate()
