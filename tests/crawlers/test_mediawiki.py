"""The glossary parser on the real saved Wikipedia pages and on small pieces of each markup."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from pipe_embed.crawlers.mediawiki import (
    is_truncated,
    page_revision,
    parse_glossary,
    split_aliases,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wikipedia"
PIECE_ICONS = {"bishop", "king", "knight", "pawn", "rook"}


@pytest.fixture(scope="module")
def chess():
    return parse_glossary((FIXTURES / "glossary_of_chess.html").read_bytes())


@pytest.fixture(scope="module")
def slang():
    return parse_glossary((FIXTURES / "glossary_of_2020s_slang.html").read_bytes())


def by_term(page, term):
    return [e for e in page.entries if e.term == term]


def test_chess_counts(chess):
    # 609 dt / 622 dd on the page: 5 terms (the piece names) have only an icon image as their dd,
    # and queen's first numbered dd is an icon too; every other dd is a definition row.
    terms = {e.term for e in chess.entries}
    assert len(chess.entries) == 616
    assert len(terms) == 604
    assert chess.dropped == Counter({"image-only definition": 6})
    assert len(terms) + len(PIECE_ICONS) == 609
    assert not terms & PIECE_ICONS
    assert chess.warnings == []


def test_chess_exact_text(chess):
    (pin,) = by_term(chess, "absolute pin")
    assert pin.definition == ("A pin against the king is called absolute since the pinned piece cannot legally "
                              "move out of the line of attack (as moving it would expose the king to check). "
                              "Cf. relative pin.")
    assert (pin.section, pin.anchor) == ("A", "absolute_pin")
    board = by_term(chess, "board")
    assert [e.definition for e in board] == ["See chessboard.",
                                             "An assignment in team chess, e.g. first board, second board, etc."]
    (queen,) = by_term(chess, "queen")
    assert queen.definition == "verb. The act of promoting a pawn to a queen."
    (zz,) = by_term(chess, "zwischenzug")
    assert zz.definition.startswith('[from German, "in-between move"] An "inbetween" move')
    assert (zz.section, zz.anchor) == ("Z", "zwischenzug")


def test_chess_aliases_and_stripping(chess):
    (pressure,) = by_term(chess, "time pressure")
    assert pressure.aliases == ["time trouble"]
    assert pressure.definition.startswith("Having very little time on one's clock")
    (castle,) = by_term(chess, "O-O")
    assert castle.aliases == ["0-0"]
    assert castle.definition == "The move notation for kingside castling. (PGN format uses Os; FIDE uses 0s.)"
    (board,) = by_term(chess, "first board")
    assert board.aliases == ["top board", "board one"]
    assert "Also called top board" in board.definition  # a mid-text alias sentence stays in the text
    (problem,) = by_term(chess, "chess problem")  # an alias line and nothing else: kept as the text
    assert (problem.definition, problem.aliases) == ("Also called composition.", ["composition"])
    for entry in chess.entries:
        assert not re.search(r"\[\d+\]|\[citation needed\]", entry.definition)
        assert "edit source" not in entry.definition and "icon.png" not in entry.definition


def test_chess_page_facts(chess):
    assert chess.revision == "1069916166"
    assert chess.title == "Glossary of chess"
    assert chess.canonical_url == "https://en.wikipedia.org/wiki/Glossary_of_chess"
    assert chess.license == "CC BY-SA 3.0"


def test_loose_definition_without_dd(chess):
    (score,) = by_term(chess, "score")  # bare text + a list right after the dt, no dd of its own
    assert score.definition.startswith("Score has two distinct meanings in chess:")
    assert "1 point for each win" in score.definition


def test_slang_counts_and_new_markup(slang):
    assert len(slang.entries) == 159
    assert len({e.term for e in slang.entries}) == 159
    assert slang.dropped == Counter({"empty term": 1, "empty definition": 1, "definition without term": 1})
    (acoustic,) = by_term(slang, "acoustic")
    assert acoustic.section == "A"  # <div class="mw-heading"><h2>
    assert acoustic.definition == ('An algospeak form of the word "autistic." Used as an insult to call someone '
                                   "stupid or to say that they have special needs.")
    assert by_term(slang, "and I oop")  # a Wiktionary link inside the term
    (nuke,) = by_term(slang, "truth nuke")
    assert nuke.anchor == "Truth_nuke"
    (situation,) = by_term(slang, "situationship")  # its dd was pushed into the next list by a hatnote
    assert situation.definition.startswith("Refers to an ambiguous romantic relationship")
    assert slang.revision == "1353592413"
    assert slang.license == "CC BY-SA 4.0"


def test_plain_markup_sections_numbering_and_aliases():
    html = b"""<html><body><div class="mw-parser-output">
    <h2><span class="mw-headline" id="A">Alpha</span><span class="mw-editsection">[edit]</span></h2>
    <dl><dt id="t1">term one</dt><dd>1.  First sense.<sup class="reference">[1]</sup></dd>
        <dd>2.  Second sense.</dd>
        <dt>color</dt><dt>colour</dt><dd>Or <b>hue</b>. What light looks like.</dd></dl>
    <h2>References</h2><dl><dt>Smith</dt><dd>A book.</dd></dl>
    </div></body></html>"""
    page = parse_glossary(html)
    assert [(e.term, e.definition, e.section, e.anchor) for e in page.entries] == [
        ("term one", "First sense.", "Alpha", "t1"),
        ("term one", "Second sense.", "Alpha", "t1"),
        ("color", "What light looks like.", "Alpha", ""),
    ]
    assert page.entries[2].aliases == ["colour", "hue"]


def test_math_becomes_tex():
    html = b"""<dl><dt>norm</dt><dd>The length <span class="mwe-math-element"><math><semantics><mi>x</mi>
    <annotation encoding="application/x-tex">{\\displaystyle \\|x\\|}</annotation></semantics></math>
    <img class="mwe-math-fallback-image-inline" alt="{\\displaystyle \\|x\\|}"/></span> of a vector.</dd></dl>"""
    (entry,) = parse_glossary(html).entries
    assert entry.definition == "The length \\|x\\| of a vector."


def test_page_without_glossary_markup_warns():
    page = parse_glossary(b"<html><body><p>Just prose, no lists.</p></body></html>")
    assert page.entries == []
    assert any("no glossary markup" in w for w in page.warnings)


def test_truncated_page_parsed_as_far_as_valid():
    raw = (FIXTURES / "glossary_of_chess.html").read_bytes()
    cut = raw.index(b"Describes a <a href=\"#piece\">piece</a> that threatens")  # inside 'active'
    page = parse_glossary(raw[:cut + 30])
    assert is_truncated(raw[:cut + 30]) and not is_truncated(raw)
    assert [e.term for e in page.entries] == ["absolute pin"]  # the cut 'active' entry is left out
    assert page.dropped["cut off by truncation"] == 1
    assert any("truncated" in w for w in page.warnings)


def test_split_aliases_plain_text_fallback():
    definition, aliases = split_aliases('A fork of king and queen. Also known as a "family check".', [], "family fork")
    assert definition == 'A fork of king and queen. Also known as a "family check".'
    assert aliases == ["family check"]


def test_revision_from_permalink_only():
    assert page_revision(b'<li id="t-permalink"><a href="/w/index.php?title=X&amp;oldid=42">') == "42"
    assert page_revision(b"<html></html>") == ""
