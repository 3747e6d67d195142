"""The compose stage: input forms, cleaning and grouping, splits, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipe_embed.pipeline.compose.stage import ComposeConfig, run_compose
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.pairs import (
    CORPUS_FILE,
    doc_id,
    pairs_file,
    read_corpus,
    read_pairs,
)
from pipe_embed.pipeline.core.store import StageResult, Store

DEFS = {
    "Rook": "A piece that moves along ranks and files.",
    "Bishop": "A piece that moves diagonally any number of squares.",
    "Knight": "A piece that moves in an L shape and can jump.",
    "Castling": "A move of the king and a rook at the same time.",
}


def all_rows(artifact) -> list[dict]:
    rows = []
    for split in ("train", "dev", "test"):
        rows.extend(read_pairs(artifact.file(pairs_file(split))))
    return rows


def compose(store: Store, paths: list[Path], **kw):
    return run_compose(store, ComposeConfig(**kw), inputs=paths)


def write_csv(path: Path, header: str, rows: list[tuple[str, str]], sep: str = ",") -> Path:
    lines = [header] + [sep.join(json.dumps(c) if sep == "," else c for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("header", ["term,definition", "anchor,positive", "question,answer",
                                    "Term,Definition", "lemma,gloss"])
def test_csv_column_names(store: Store, tmp_path: Path, header: str):
    path = write_csv(tmp_path / "g.csv", header, list(DEFS.items()))
    artifact = compose(store, [path]).artifact
    rows = all_rows(artifact)
    assert {r["anchor"]: r["positive"] for r in rows} == DEFS
    assert artifact.stats["rows_read"] == 4 and artifact.stats["pairs_kept"] == 4


def test_tsv(store: Store, tmp_path: Path):
    path = write_csv(tmp_path / "g.tsv", "term\tdefinition", list(DEFS.items()), sep="\t")
    assert {r["anchor"] for r in all_rows(compose(store, [path]).artifact)} == set(DEFS)


def test_two_unnamed_columns_are_read_without_header(store: Store, tmp_path: Path):
    path = tmp_path / "plain.csv"
    path.write_text("\n".join(f'{k},"{v}"' for k, v in DEFS.items()) + "\n")
    rows = all_rows(compose(store, [path]).artifact)
    assert {r["anchor"]: r["positive"] for r in rows} == DEFS


def test_column_override(store: Store, tmp_path: Path):
    path = tmp_path / "custom.csv"
    path.write_text("id,name,meaning\n" + "\n".join(f'{i},{k},"{v}"' for i, (k, v) in enumerate(DEFS.items())))
    rows = all_rows(run_compose(store, ComposeConfig(anchor_col="name", positive_col="meaning"),
                                inputs=[path]).artifact)
    assert {r["anchor"] for r in rows} == set(DEFS)


def test_jsonl_flagembedding_lists(store: Store, tmp_path: Path):
    path = tmp_path / "fe.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in [
        {"query": "Rook", "pos": [DEFS["Rook"], "A castle-shaped piece used in castling."],
         "neg": [DEFS["Bishop"]]},
        {"query": "Knight", "pos": [DEFS["Knight"]], "neg": []},
    ]) + "\n")
    rows = {r["anchor"]: r for r in all_rows(compose(store, [path]).artifact)}
    assert rows["Rook"]["positives"] == [DEFS["Rook"], "A castle-shaped piece used in castling."]
    assert rows["Rook"]["hard_negatives"] == [DEFS["Bishop"]]
    assert rows["Knight"]["hard_negatives"] == []


def test_parquet_and_several_inputs(store: Store, tmp_path: Path):
    pq = tmp_path / "a.parquet"
    pd.DataFrame({"anchor": ["Rook", "Bishop"], "positive": [DEFS["Rook"], DEFS["Bishop"]]}).to_parquet(pq)
    csv = write_csv(tmp_path / "b.csv", "term,definition", [("Knight", DEFS["Knight"])])
    artifact = compose(store, [pq, csv]).artifact
    rows = all_rows(artifact)
    assert {r["anchor"] for r in rows} == {"Rook", "Bishop", "Knight"}
    assert {r["source"] for r in rows} == {"a.parquet", "b.csv"}


def test_cleaning_grouping_and_duplicates(store: Store, tmp_path: Path):
    path = write_csv(tmp_path / "g.csv", "term,definition", [
        ("Rook", "A piece that moves along ranks and files.[1]"),
        ("rook", "A castle-shaped piece &amp; part of <i>castling</i>."),
        ("Rook", "A piece that moves along ranks  and files."),  # duplicate after cleaning
        ("Pawn", "short"),
        ("", "A definition without a term at all."),
    ])
    artifact = compose(store, [path]).artifact
    [rook] = all_rows(artifact)
    assert rook["anchor"] == "Rook"
    assert rook["positives"] == ["A piece that moves along ranks and files.",
                                 "A castle-shaped piece & part of castling."]
    assert rook["positive_ids"] == [doc_id(p) for p in rook["positives"]]
    assert rook["hard_negatives"] == []
    assert artifact.stats["dropped"] == {"duplicate": 1, "positive_too_short": 1, "empty_anchor": 1}
    corpus = read_corpus(artifact.file(CORPUS_FILE))
    assert {c["text"] for c in corpus} == set(rook["positives"])


def test_splits_do_not_leak_and_are_deterministic(store: Store, tmp_path: Path):
    rows = [(f"Term {i}", f"Definition number {i} of the glossary.") for i in range(300)]
    rows += [(f"term {i}", f"Second definition for term {i} here.") for i in range(0, 300, 3)]
    path = write_csv(tmp_path / "g.csv", "term,definition", rows)
    artifact = compose(store, [path], dev_fraction=0.2, test_fraction=0.2, seed=7).artifact
    seen: dict[str, str] = {}
    for split in ("train", "dev", "test"):
        for row in read_pairs(artifact.file(pairs_file(split))):
            key = row["anchor"].lower()
            assert key not in seen, f"{key} in {seen.get(key)} and {split}"
            seen[key] = split
    assert len(seen) == 300
    counts = artifact.stats["splits"]
    assert counts["dev"] > 30 and counts["test"] > 30 and counts["train"] > 120
    other = Store(tmp_path / "other")
    again = compose(other, [path], dev_fraction=0.2, test_fraction=0.2, seed=7).artifact
    assert again.version == artifact.version
    assert again.file("pairs.dev.jsonl").read_bytes() == artifact.file("pairs.dev.jsonl").read_bytes()


def test_cache_hit_and_change_detection(store: Store, tmp_path: Path):
    path = write_csv(tmp_path / "g.csv", "term,definition", list(DEFS.items()))
    first = compose(store, [path])
    assert not first.cached
    assert compose(store, [path]).cached
    assert compose(store, [path], seed=99).artifact.version != first.artifact.version
    write_csv(path, "term,definition", list(DEFS.items())[:3])
    changed = compose(store, [path])
    assert not changed.cached and changed.artifact.version != first.artifact.version


def test_from_crawl_artifact(store: Store, tmp_path: Path):
    def build(work: Path) -> StageResult:
        pd.DataFrame({"term": list(DEFS), "definition": list(DEFS.values()),
                      "source": "wikipedia_glossary"}).to_csv(work / "glossary.csv", index=False)
        return StageResult()

    crawl = store.run(stage="crawl", format_version=1, config={}, inputs=[], build=build).artifact
    artifact = run_compose(store, ComposeConfig(), from_ref="crawl@latest").artifact
    assert artifact.inputs == [{"stage": "crawl", "version": crawl.version}]
    assert {r["source"] for r in all_rows(artifact)} == {"wikipedia_glossary"}


# -- bad input: one clear line, nothing written --------------------------------------------------

def assert_nothing_written(store: Store) -> None:
    assert store.versions("compose") == []
    stage_dir = store.stage_dir("compose")
    if stage_dir.exists():
        assert [p.name for p in stage_dir.iterdir()] in ([], [".locks"])


def test_malformed_csv_line_names_file_and_line(store: Store, tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text('term,definition\nRook,"A piece that moves along files."\nKing,too,many\n')
    with pytest.raises(PipeError, match=r"bad\.csv:3: expected 2 fields, found 3"):
        compose(store, [path])
    assert_nothing_written(store)


def test_unterminated_quote(store: Store, tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text('term,definition\nRook,"A piece that moves along files.\n')
    with pytest.raises(PipeError, match=r"bad\.csv:\d+: malformed CSV"):
        compose(store, [path])
    assert_nothing_written(store)


def test_malformed_jsonl_line(store: Store, tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"anchor": "Rook", "positive": DEFS["Rook"]}) + "\n{not json\n")
    with pytest.raises(PipeError, match=r"bad\.jsonl:2: malformed JSON"):
        compose(store, [path])
    assert_nothing_written(store)


def test_jsonl_row_missing_field(store: Store, tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"anchor": "Rook", "positive": DEFS["Rook"]}) + "\n"
                    + json.dumps({"anchor": "King"}) + "\n")
    with pytest.raises(PipeError, match=r"bad\.jsonl:2: row has no 'positive' field"):
        compose(store, [path])


def test_unknown_columns_are_listed(store: Store, tmp_path: Path):
    path = tmp_path / "cols.csv"
    path.write_text("name,meaning,notes\nRook,A piece that moves along files.,x\n")
    with pytest.raises(PipeError) as info:
        compose(store, [path])
    message = str(info.value)
    assert "cols.csv" in message and "name, meaning, notes" in message and "term/definition" in message
    assert_nothing_written(store)


def test_empty_result_says_why(store: Store, tmp_path: Path):
    path = write_csv(tmp_path / "short.csv", "term,definition", [("a", "tiny"), ("b", "small")])
    with pytest.raises(PipeError, match="no pairs left after cleaning 2 rows.*positive_too_short=2"):
        compose(store, [path])
    assert_nothing_written(store)


def test_missing_and_unsupported_files(store: Store, tmp_path: Path):
    with pytest.raises(PipeError, match="input file not found"):
        compose(store, [tmp_path / "nope.csv"])
    odd = tmp_path / "g.xlsx"
    odd.write_text("x")
    with pytest.raises(PipeError, match="unsupported file type '.xlsx'"):
        compose(store, [odd])


def test_bad_fractions():
    with pytest.raises(ConfigError, match="dev_fraction"):
        ComposeConfig(dev_fraction=0.6, test_fraction=0.5).validate()


def test_hard_k_adds_bm25_negatives(store: Store, tmp_path: Path):
    rows = [("Rook", "A piece that moves along ranks and files of the board."),
            ("Bishop", "A piece that moves along diagonals of the board."),
            ("Queen", "The most powerful piece, moving along ranks, files and diagonals."),
            ("Knight", "A piece that jumps in an L shape over other pieces."),
            ("Castling", "A move of the king and a rook together.")]
    path = write_csv(tmp_path / "g.csv", "term,definition", rows)
    from pipe_embed.mining.bm25 import bm25_negatives_for_pairs  # the miner the CLI hands to compose

    config = ComposeConfig(hard_k=2, dev_fraction=0.0, test_fraction=0.0)
    with pytest.raises(ConfigError, match="hard_k"):
        run_compose(store, config, inputs=[path])
    artifact = run_compose(store, config, inputs=[path], negatives=bm25_negatives_for_pairs).artifact
    pairs = {r["anchor"]: r for r in read_pairs(artifact.file(pairs_file("train")))}
    assert pairs["Rook"]["hard_negatives"], "BM25 should find definitions sharing 'rook'"
    for row in pairs.values():
        assert len(row["hard_negatives"]) <= 2
        assert not set(row["hard_negatives"]) & set(row["positives"])
    assert artifact.config["hard_k"] == 2


# -- wrong types, missing values, odd bytes -----------------------------------------------------

def _jsonl(path: Path, *rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("row, message", [
    ({"anchor": "King", "positive": 123456789012345},
     r"bad\.jsonl:2: column 'positive': expected text or a list of texts, got a number \(123456789012345\)"),
    ({"anchor": "King", "positive": {"text": "A nested object."}}, r"bad\.jsonl:2: column 'positive': .*an object"),
    ({"anchor": "King", "positive": ["A fine definition.", 5]}, r"bad\.jsonl:2: column 'positive': item 2"),
    ({"anchor": 42, "positive": "A fine definition."}, r"bad\.jsonl:2: column 'anchor': expected text, got a number"),
    ({"anchor": ["King"], "positive": "A fine definition."}, r"bad\.jsonl:2: column 'anchor': .*a list"),
    ({"anchor": "King", "positive": "A fine definition.", "hard_negatives": {"a": 1}},
     r"bad\.jsonl:2: column 'hard_negatives'"),
    ({"anchor": "King", "positive": "A fine definition.", "source": 3}, r"bad\.jsonl:2: column 'source'"),
])
def test_wrong_types_in_jsonl_name_file_line_and_column(store: Store, tmp_path: Path, row: dict, message: str):
    path = _jsonl(tmp_path / "bad.jsonl", {"anchor": "Rook", "positive": DEFS["Rook"]}, row)
    with pytest.raises(PipeError, match=message):
        compose(store, [path])
    assert_nothing_written(store)


def test_wrong_types_in_parquet_name_row_and_column(store: Store, tmp_path: Path):
    path = tmp_path / "g.parquet"
    pd.DataFrame({"anchor": ["Rook", "Bishop"], "positive": [1234567890, 42]}).to_parquet(path)
    with pytest.raises(PipeError, match=r"g\.parquet:1: column 'positive': expected text or a list of texts, "
                                        r"got a number \(1234567890\)"):
        compose(store, [path])
    assert_nothing_written(store)


def test_missing_values_are_dropped_and_counted(store: Store, tmp_path: Path):
    path = _jsonl(tmp_path / "g.jsonl",
                  {"anchor": "Rook", "positive": DEFS["Rook"]},
                  {"anchor": "Pawn", "positive": None},
                  {"anchor": "Queen", "positive": []},
                  {"anchor": None, "positive": DEFS["Knight"]},
                  {"anchor": "Bishop", "positive": [DEFS["Bishop"], None]})
    artifact = compose(store, [path]).artifact
    stats = artifact.stats
    assert stats["dropped"] == {"empty_positive": 3, "empty_anchor": 1}
    assert stats["rows_read"] == 5 and stats["pairs_kept"] == 2
    assert stats["pairs_read"] == stats["pairs_kept"] + sum(stats["dropped"].values())
    csv_path = tmp_path / "g.csv"
    csv_path.write_text(f'term,definition\nRook,"{DEFS["Rook"]}"\n,\n\nPawn,\n')
    stats = compose(store, [csv_path]).artifact.stats
    assert stats["rows_read"] == 3 and stats["dropped"] == {"empty_anchor": 1, "empty_positive": 1}
    pq = tmp_path / "g.parquet"
    pd.DataFrame({"term": ["Rook", "Pawn", None], "definition": [DEFS["Rook"], None, DEFS["Knight"]]}).to_parquet(pq)
    assert compose(store, [pq]).artifact.stats["dropped"] == {"empty_positive": 1, "empty_anchor": 1}


def test_unclosed_quote_is_reported_where_it_opens(store: Store, tmp_path: Path):
    path = tmp_path / "bad.csv"
    rows = [f'Term {i},"Definition number {i} of the glossary."' for i in range(20)]
    rows[3] = 'Term 3,"Definition that never closes its quote.'
    path.write_text("term,definition\n" + "\n".join(rows) + "\n")
    with pytest.raises(PipeError, match=r"bad\.csv:5: malformed CSV: a quote opened on this line is not closed, "
                                        r"and the record runs on to line \d+"):
        compose(store, [path])
    assert_nothing_written(store)


def test_directory_as_input_is_not_called_missing(store: Store, tmp_path: Path):
    folder = tmp_path / "glossaries"
    folder.mkdir()
    with pytest.raises(PipeError, match=r"glossaries: is a directory, not a file — give the input file itself"):
        compose(store, [folder])


def test_control_characters_are_removed(store: Store, tmp_path: Path):
    path = _jsonl(tmp_path / "g.jsonl",
                  {"anchor": "Ro\u0000ok\u0007", "positive": "A piece\u0000 that moves\u0085 along ranks and files."})
    [row] = all_rows(compose(store, [path], dev_fraction=0.0, test_fraction=0.0).artifact)
    assert row["anchor"] == "Rook" and row["positive"] == "A piece that moves along ranks and files."
    csv_path = tmp_path / "g.csv"
    csv_path.write_text('term,definition\nKni\x00ght,"A piece that moves in an L shape."\n')
    [row] = all_rows(compose(store, [csv_path], dev_fraction=0.0, test_fraction=0.0).artifact)
    assert row["anchor"] == "Knight"


def test_non_utf8_csv_names_the_line(store: Store, tmp_path: Path):
    path = tmp_path / "latin.csv"
    lines = ["term,definition"] + [f"Term {i},Definition number {i} of the glossary." for i in range(500)]
    lines[300] = "Caf\u00e9,A place that serves coffee."
    path.write_bytes("\n".join(lines).encode("utf-8").replace("Caf\u00e9".encode(), "Caf\u00e9".encode("latin-1")))
    with pytest.raises(PipeError, match=r"latin\.csv:301: not UTF-8 text \(byte 4 of the line\)"):
        compose(store, [path])
    assert_nothing_written(store)
