"""The dictd source on a small FOLDOC-style dictionary written here, and on the real FOLDOC when installed."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipe_embed.crawlers import dictd
from pipe_embed.crawlers.base import ParsedPage
from pipe_embed.crawlers.dictd import (
    decode_number,
    entry_rows,
    find_dictionaries,
    find_dictionary,
    is_cross_reference,
    parse_dictionary,
    plain_text,
    split_senses,
    strip_date,
    strip_marker,
)
from pipe_embed.crawlers.stage import GLOSSARY_FILE, run_crawl
from pipe_embed.pipeline.cli import app
from pipe_embed.pipeline.core.errors import PipeError

REAL = Path("/usr/share/dictd/foldoc.index")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# (index headwords, entry text), in the order dictfmt writes FOLDOC: the meta entries first.
ENTRIES = [
    (["00-database-utf8"], "\n"),
    (["00-database-url"], "http://foldoc.org/Dictionary.gz\n"),
    (["00-database-short"], "00-database-short\n     The Free On-line Dictionary of Computing (19 January 2023)\n"),
    (["00-database-info"], "The original data is available from:\n     http://foldoc.org/Dictionary.gz\n\n"
                           "   Permission is granted to copy, distribute and/or modify this\n"
                           "   document under the terms of the GNU Free Documentation\n"
                           "   License, Version 1.1 or any later version published by the\n"
                           "   Free Software Foundation.\n"),
    (["hash", "#"], "hash\n#\n\n   1. <character> {hash character}.\n\n   2. <programming> {hash coding}.\n\n"
                    "   3. The preferred term for a {Perl} {associative array}.\n\n   (1995-03-06)\n\n"),
    (["recursion", "recursive", "recurse"],
     "recursion\nrecursive\n\n   <mathematics, programming> When a {function} (or {procedure})\n"
     "   calls itself.  Such a function is called \"recursive\".\n\n   [{Jargon File}]\n\n   (1996-05-11)\n\n"),
    (["parentheses"], "parentheses\n\n   See {left parenthesis}, {right parenthesis}.\n\n   (1995-03-16)\n\n"),
    (["abc"], "ABC\n\n   <language> An {imperative language} from {CWI},\n   Netherlands.  {ABC home\n"
              "   (http://homepages.cwi.nl/~steven/abc/)}.\n\n   (1995-02-09)\n\n"),
    (["blit"], "blit\n\n   <jargon> /blit/ 1. To copy a large array of bits from one\n   part of memory to another.\n\n"
               "   2. Loosely, any large data transfer.  See {bitblt}.\n\n   (1994-11-08)\n\n"),
    (["cen"], "CEN\n\n   <body> Comité Européen de Normalisation.\n\n   (1999-01-01)\n\n"),
]

ROWS = [  # (term, definition, aliases, section)
    ("hash", "hash character.", ["#"], "character"),
    ("hash", "hash coding.", ["#"], "programming"),
    ("hash", "The preferred term for a Perl associative array.", ["#"], ""),
    ("recursion", 'When a function (or procedure) calls itself. Such a function is called "recursive". [Jargon File]',
     ["recursive", "recurse"], "mathematics, programming"),
    ("ABC", "An imperative language from CWI, Netherlands. ABC home.", [], "language"),
    ("blit", "/blit/ To copy a large array of bits from one part of memory to another.", [], "jargon"),
    ("blit", "Loosely, any large data transfer. See bitblt.", [], "jargon"),
    ("CEN", "Comité Européen de Normalisation.", [], "body"),
]


def encode_number(value: int) -> str:
    digits = ""
    while True:
        digits = B64[value % 64] + digits
        value //= 64
        if not value:
            return digits


def dictionary_files(entries: list[tuple[list[str], str]] = ENTRIES) -> tuple[str, bytes]:
    """(the .index text, the .dict bytes) of entries, written the way dictfmt writes them."""
    body = b""
    lines = []
    for headwords, text in entries:
        data = text.encode("utf-8")
        lines += [f"{word}\t{encode_number(len(body))}\t{encode_number(len(data))}" for word in headwords]
        body += data
    return "\n".join(sorted(lines)) + "\n", body


def write_dictionary(directory: Path, name: str = "foldoc", *, dz: bool = False,
                     entries: list[tuple[list[str], str]] = ENTRIES) -> Path:
    """NAME.index and NAME.dict (or NAME.dict.dz) in `directory`; returns the .index path."""
    directory.mkdir(parents=True, exist_ok=True)
    index, body = dictionary_files(entries)
    (directory / f"{name}.index").write_text(index, encoding="utf-8")
    if dz:
        (directory / f"{name}.dict.dz").write_bytes(gzip.compress(body, mtime=0))
    else:
        (directory / f"{name}.dict").write_bytes(body)
    return directory / f"{name}.index"


def row_tuples(page: ParsedPage) -> list[tuple[str, str, list[str], str]]:
    return [(e.term, e.definition, e.aliases, e.section) for e in page.entries]


def test_numbers_are_dictd_base64():
    assert [decode_number(s) for s in ("A", "B", "/", "BA", "Gb9L")] == [0, 1, 63, 64, 1687371]
    assert all(decode_number(encode_number(n)) == n for n in (0, 63, 64, 4095, 4096, 5_578_809))
    for bad in ("", "A$", "1 2"):
        with pytest.raises(ValueError):
            decode_number(bad)


def test_text_pieces():
    assert plain_text("A {Lisp}\n   {pair} object, see {dotted\n   pair}.") == "A Lisp pair object, see dotted pair."
    assert plain_text("{More about FOLDOC (about.html)} and {(http://foldoc.org/)}") == \
        "More about FOLDOC and http://foldoc.org/"
    assert plain_text("PUT {} IN s; while (p) { q(); }") == "PUT {} IN s; while (p) { q(); }"  # code, not references
    assert plain_text("{ML (language)}") == "ML (language)"
    assert strip_marker("<tool, information science> <tool> A Unix command.") == ("tool, information science",
                                                                                  "A Unix command.")
    assert strip_marker("<networking< Gate daemon.") == ("networking", "Gate daemon.")
    assert strip_marker("<sblake@thomsoft.com> wrote it.") == ("", "<sblake@thomsoft.com> wrote it.")
    assert strip_date("Calls itself. (1996-05-11)") == "Calls itself."
    assert strip_date("Version 2.0 (1995-10-25). FTP.") == "Version 2.0 (1995-10-25). FTP."
    assert is_cross_reference("See {free software}, {free variable}.")
    assert is_cross_reference("/dog'kow/ See {Moof}. [{Jargon File}]")
    assert not is_cross_reference("{ATM Adaptation Layer}.")  # an expansion is a definition
    assert not is_cross_reference("Grinning, running and ducking. See {emoticon}.")


def test_numbered_senses():
    assert split_senses("   <jargon> /blit/ 1. To copy.\n\n   2. Loosely.\n") == \
        ("<jargon> /blit/", ["To copy.", "Loosely."])
    # senses run on in one paragraph, after a sentence
    assert split_senses("   1. A {jiffy} (sense 1).  2. In simulations, a step.  3. In FORTH, a quote.") == \
        ("", ["A {jiffy} (sense 1).", "In simulations, a step.", "In FORTH, a quote."])
    # a field marker alone before the senses, and a number that is not the next one staying in its sense
    assert split_senses("   <language>\n\n   1. A subset of ALGOL 60.\n\n   3. Not next.\n\n   2. Another.") == \
        ("<language>", ["A subset of ALGOL 60. 3. Not next.", "Another."])
    # a numbered list after a sentence that stops short is part of the definition, not senses
    text = "   <logic> A rule. For example, given that\n\n    1. Socrates is a man and that\n    2. all men are mortal,"
    assert split_senses(text) == ("", [" ".join(text.split())])
    page = ParsedPage()
    rows = entry_rows(["asynchronous"], "asynchronous\n\n   <architecture> Not synchronised.\n\n"
                      "   1. <operating system> A process.\n\n   2. A transmission.\n", page)
    assert [(r.definition, r.section) for r in rows] == [
        ("Not synchronised.", "architecture"), ("A process.", "operating system"), ("A transmission.", "architecture")]


def test_parse_dictionary_rows():
    index, body = dictionary_files()
    page = parse_dictionary(index, body, "foldoc.index")
    assert row_tuples(page) == ROWS
    assert page.dropped == {"cross-reference only": 1}
    assert page.title == "The Free On-line Dictionary of Computing"
    assert page.revision == "19 January 2023"
    assert page.canonical_url == "http://foldoc.org/Dictionary.gz"
    assert page.license == "GNU Free Documentation License, Version 1.1 or any later version"
    assert page.warnings == []


def test_dictionary_without_meta_entries():
    index, body = dictionary_files([(["foo", "foobar"], "foo\n\n   A metasyntactic variable.\n")])
    page = parse_dictionary(index, body)
    assert row_tuples(page) == [("foo", "A metasyntactic variable.", ["foobar"], "")]
    assert (page.title, page.revision, page.canonical_url, page.license) == ("", "", "", "")


def test_dictd_source_through_the_stage(store, make_config, tmp_path: Path):
    plain = write_dictionary(tmp_path / "plain")
    packed = write_dictionary(tmp_path / "packed", dz=True)
    results = []
    for path in (plain, packed.with_name("foldoc.dict.dz")):
        outcome = run_crawl(store, make_config(sources=["dictd"], dictd=[str(path)]))
        with open(outcome.artifact.file(GLOSSARY_FILE), newline="", encoding="utf-8") as fh:
            results.append(list(csv.DictReader(fh)))
        assert outcome.artifact.stats["dropped"] == {"cross-reference only": 1}
    assert results[0] == results[1]
    rows = results[0]
    assert [(r["term"], r["definition"], r["aliases"], r["section"]) for r in rows] == [
        (term, definition, " | ".join(aliases), section) for term, definition, aliases, section in ROWS]
    assert {(r["source"], r["page"], r["url"], r["revision"], r["license"]) for r in rows} == {
        ("dictd", "foldoc", "http://foldoc.org/Dictionary.gz", "19 January 2023",
         "GNU Free Documentation License, Version 1.1 or any later version")}
    # the same files elsewhere are the same content: a cache hit
    copy = write_dictionary(tmp_path / "copy", dz=True)
    assert run_crawl(store, make_config(sources=["dictd"], dictd=[str(copy)])).cached


def test_crawl_command_writes_glossary(tmp_path: Path):
    index = write_dictionary(tmp_path / "dicts", dz=True)
    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["crawl", "--sources", "dictd", "--dictd", str(index), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "8 rows, 5 terms from 1 page" in result.stderr
    (path,) = data.glob("crawl/*/glossary.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["term"] for r in rows] == [row[0] for row in ROWS]


def test_names_are_looked_up(monkeypatch, tmp_path: Path):
    write_dictionary(tmp_path / "first", "foldoc")
    write_dictionary(tmp_path / "second", "foldoc", dz=True)
    write_dictionary(tmp_path / "second", "jargon", dz=True)
    (tmp_path / "second" / "orphan.index").write_text("")  # no .dict beside it: not a dictionary
    monkeypatch.setattr(dictd, "SEARCH_DIRS", (str(tmp_path / "second"),))
    monkeypatch.setenv("DICTD_DIR", str(tmp_path / "first"))
    (found,) = find_dictionary("foldoc")
    assert found.body == tmp_path / "first" / "foldoc.dict"  # $DICTD_DIR first
    assert [(d.name, d.body.parent.name) for d in find_dictionaries([])] == [("foldoc", "first"), ("jargon", "second")]
    assert [d.name for d in find_dictionaries(["jargon", str(tmp_path / "second" / "jargon.dict.dz")])] == ["jargon"]
    assert [d.name for d in find_dictionary(str(tmp_path / "second"))] == ["foldoc", "jargon"]


def test_missing_dictionary_says_what_to_do(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(dictd, "SEARCH_DIRS", (str(tmp_path),))
    monkeypatch.delenv("DICTD_DIR", raising=False)
    with pytest.raises(PipeError, match=r"dictd dictionary 'foldoc' not found: looked for foldoc.index") as info:
        find_dictionary("foldoc")
    assert str(tmp_path) in info.value.message and "apt-get install dict-foldoc" in (info.value.hint or "")
    with pytest.raises(PipeError, match="no dictd dictionary found") as info:
        find_dictionaries([])
    assert "apt-get install dict-foldoc" in (info.value.hint or "")
    (tmp_path / "lone.index").write_text("x\tA\tB\n")
    with pytest.raises(PipeError, match=r"lone.index: not a dictd dictionary: .* has no lone.dict.dz \(or lone.dict\)"):
        find_dictionary(str(tmp_path / "lone.index"))


@pytest.mark.parametrize(("line", "says"), [
    ("only-two\tA", r"foldoc.index:3: expected 3 tab-separated fields \(headword, offset, length\), found 2"),
    ("bad\tA$\tB", r"foldoc.index:3: offset 'A\$' or length 'B' is not a dictd base64 number"),
    ("far\tA\t////", r"foldoc.index:3: 'far' points past the end of the dictionary text"),
])
def test_malformed_index_line_is_named(tmp_path: Path, line: str, says: str):
    index = write_dictionary(tmp_path / "bad")
    lines = index.read_text().splitlines()
    index.write_text("\n".join([*lines[:2], line, *lines[2:]]) + "\n")
    with pytest.raises(PipeError, match=says):
        parse_dictionary(index.read_text(), (tmp_path / "bad" / "foldoc.dict").read_bytes(), str(index))
    result = CliRunner().invoke(app, ["crawl", "--sources", "dictd", "--dictd", str(index),
                                      "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "foldoc.index:3:" in result.stderr and "Traceback" not in result.output
    assert not list((tmp_path / "data").glob("crawl/*/manifest.json"))


@pytest.mark.skipif(not REAL.is_file(), reason="FOLDOC is not installed (apt-get install dict-foldoc)")
def test_real_foldoc(store, make_config):
    outcome = run_crawl(store, make_config(sources=["dictd"], dictd=["foldoc"]))
    stats = outcome.artifact.stats
    assert 10_000 < stats["rows"] < 20_000  # 13,599 rows, 11,997 terms in Debian's dict-foldoc of 19 January 2023
    assert stats["terms"] > 10_000
    assert 0 < stats["dropped"]["cross-reference only"] < 100
    with open(outcome.artifact.file(GLOSSARY_FILE), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_term: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_term.setdefault(row["term"], []).append(row)
    (daemon,) = by_term["daemon"]
    assert daemon["section"] == "operating system"
    assert "A program that is not invoked explicitly" in daemon["definition"]
    assert "{" not in daemon["definition"] and not daemon["definition"].endswith(")")  # links and date gone
    (recursion,) = by_term["recursion"]
    assert "recursive" in recursion["aliases"].split(" | ")
    assert [r["section"] for r in by_term["hash"]] == ["character", "programming", ""]
    assert rows[0]["license"].startswith("GNU Free Documentation License")
    assert not any(r["term"].startswith("00-database") or r["term"].startswith("00database") for r in rows)
