"""The data contract readers: bad bytes, wrong types and odd files name file, line and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.errors import InputError
from pipe_embed.pipeline.core.pairs import doc_id, iter_jsonl, read_corpus, read_pairs, require_file

POS = "A piece that moves along ranks and files."


def _jsonl(path: Path, *rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_not_utf8_names_the_line_and_byte(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(json.dumps({"anchor": "Rook", "positive": POS}).encode() + b"\n"
                     + b'{"anchor": "Caf\xe9", "positive": "x"}\n')
    with pytest.raises(InputError, match=r"p.jsonl:2: not UTF-8 text \(byte 16 of the line\) — re-save"):
        list(iter_jsonl(path))


def test_bom_and_blank_lines_are_fine(tmp_path: Path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"anchor": "Rook", "positive": POS}).encode() + b"\n\n")
    assert [n for n, _ in iter_jsonl(path)] == [1]


def test_files_that_are_not_files(tmp_path: Path):
    with pytest.raises(InputError, match="is a directory, not a file — give the pairs file itself"):
        read_pairs(tmp_path)
    with pytest.raises(InputError, match="pairs file not found"):
        read_pairs(tmp_path / "nope.jsonl")
    assert require_file(_jsonl(tmp_path / "ok.jsonl", {})) == tmp_path / "ok.jsonl"


def test_lone_surrogate_escape_is_an_error_not_a_crash_later(tmp_path: Path):
    path = _jsonl(tmp_path / "p.jsonl", '{"anchor": "Ro\\ud800ok", "positive": "x"}')
    with pytest.raises(InputError, match=r"p.jsonl:1: holds a lone surrogate escape"):
        list(iter_jsonl(path))
    pair = _jsonl(tmp_path / "emoji.jsonl", '{"anchor": "Rook \\ud83d\\ude00", "positive": "x"}')  # a valid pair
    assert [obj["anchor"] for _, obj in iter_jsonl(pair)] == ["Rook \U0001F600"]


@pytest.mark.parametrize("row, message", [
    ({"anchor": 12, "positive": POS}, r"column 'anchor': expected text, got a number \(12\)"),
    ({"anchor": "Rook", "positive": 123456789012345},
     r"column 'positive': expected text or a list of texts, got a number \(123456789012345\)"),
    ({"anchor": "Rook", "positive": {"text": POS}}, r"column 'positive': .* got an object"),
    ({"anchor": "Rook", "positives": [POS, 7]}, r"column 'positives': item 2: expected text, got a number \(7\)"),
    ({"anchor": "Rook", "positive": POS, "hard_negatives": [True]}, r"column 'hard_negatives': item 1: .* a boolean"),
    ({"query": "Rook", "pos": [POS], "neg": 3.5}, r"column 'neg': .* got a number \(3.5\)"),
    ({"anchor": "Rook", "positive": None}, r"row has no positive"),
    ({"anchor": None, "positive": POS}, r"column 'anchor': empty anchor"),
])
def test_read_pairs_rejects_wrong_types_by_column(tmp_path: Path, row: dict, message: str):
    path = _jsonl(tmp_path / "pairs.jsonl", {"anchor": "Bishop", "positive": POS}, row)
    with pytest.raises(InputError, match=rf"pairs.jsonl:2: {message}"):
        read_pairs(path)


def test_read_pairs_accepts_both_forms(tmp_path: Path):
    path = _jsonl(tmp_path / "pairs.jsonl", {"anchor": "Rook", "positive": POS, "hard_negatives": ["x"]},
                  {"query": "Pawn", "pos": ["A small piece.", ""], "neg": None})
    rook, pawn = read_pairs(path)
    assert rook["positives"] == [POS] and rook["hard_negatives"] == ["x"] and rook["positive_ids"] == [doc_id(POS)]
    assert pawn["positives"] == ["A small piece."] and pawn["hard_negatives"] == []


def test_read_corpus_ids_and_types(tmp_path: Path):
    path = _jsonl(tmp_path / "corpus.jsonl", {"id": 7, "text": "seven"}, {"text": "no id"})
    assert read_corpus(path) == [{"id": "7", "text": "seven"}, {"id": doc_id("no id"), "text": "no id"}]
    bad = _jsonl(tmp_path / "bad.jsonl", {"id": "a", "text": ["x"]})
    with pytest.raises(InputError, match=r"bad.jsonl:1: column 'text': expected text, got a list"):
        read_corpus(bad)


def test_written_jsonl_is_strict_json(tmp_path: Path):
    import math

    from pipe_embed.pipeline.core.pairs import write_jsonl

    path = tmp_path / "pairs.jsonl"
    good = {"anchor": "a", "positive": "b", "hard_negatives": ["c"], "negative_scores": [0.5]}
    bad = {**good, "negative_scores": [0.5, math.nan]}
    with pytest.raises(InputError, match=r"pairs.jsonl:2: field 'negative_scores\[1\]' is not a finite number"):
        write_jsonl(path, [good, bad])
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(InputError, match=r"field 'group.score' is not a finite number"):
        write_jsonl(path, [{**good, "group": {"score": math.inf}}])
    assert write_jsonl(path, [good]) == 1 and json.loads(path.read_text()) == good
