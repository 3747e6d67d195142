"""Id-based input (LexDPR: query_text + positive_passages ids + a corpus file) and carried group columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipe_embed.pipeline.compose.stage import ComposeConfig, run_compose
from pipe_embed.pipeline.core.errors import InputError, PipeError
from pipe_embed.pipeline.core.pairs import CORPUS_FILE, doc_id, pairs_file, read_corpus, read_jsonl, read_pairs
from pipe_embed.pipeline.core.store import Store
from tests.pipeline.compose.lexdpr_data import CORPUS, QUERIES, write_jsonl, write_lexdpr

NO_SPLITS = {"dev_fraction": 0.0, "test_fraction": 0.0}


def compose_ids(store: Store, queries: Path, corpus: Path | None, **kw):
    return run_compose(store, ComposeConfig(corpus_file=str(corpus) if corpus else None, **{**NO_SPLITS, **kw}),
                       inputs=[queries])


def by_query(artifact) -> dict[str, dict]:
    return {r["query_id"]: r for r in read_pairs(artifact.file(pairs_file("train")))}


def test_ids_resolve_to_texts_and_the_users_ids_are_kept(store: Store, tmp_path: Path):
    queries, corpus = write_lexdpr(tmp_path)
    artifact = compose_ids(store, queries, corpus, group_cols=["law"]).artifact
    rows = by_query(artifact)
    assert set(rows) == {q["query_id"] for q in QUERIES}
    theft = rows["q3"]
    assert theft["anchor"] == "What is theft?"
    assert theft["positives"] == ["Theft is the taking of movable property of another with intent to keep it."]  # cleaned
    assert theft["positive_ids"] == ["crim-1"]
    assert theft["negative_ids"] == ["crim-2", "7"]  # a numeric id is read as text
    assert theft["hard_negatives"] == [CORPUS[5]["text"], CORPUS[7]["text"]]
    assert rows["q5"]["positive_ids"] == ["crim-2", "crim-3"] and rows["q2"]["negative_ids"] == []
    assert theft["group"] == {"law": "Criminal Code"}  # the query row has no law: its positive's
    # every document of the corpus file is in the corpus, under its own id, with its group
    corpus_rows = {r["id"]: r for r in read_jsonl(artifact.file(CORPUS_FILE))}
    assert set(corpus_rows) == {str(c["id"]) for c in CORPUS}
    assert corpus_rows["tax-3"]["group"] == {"law": "Tax Act"} and corpus_rows["civil-3"]["text"] == CORPUS[2]["text"]
    assert artifact.stats["corpus_file_documents"] == len(CORPUS) and artifact.stats["corpus_size"] == len(CORPUS)
    # every row has the same keys (one shape per file)
    assert len({tuple(r) for r in read_jsonl(artifact.file(pairs_file("train")))}) == 1
    assert len({tuple(r) for r in corpus_rows.values()}) == 1


def test_the_corpus_file_content_is_part_of_the_version(store: Store, tmp_path: Path):
    queries, corpus = write_lexdpr(tmp_path)
    first = compose_ids(store, queries, corpus)
    assert compose_ids(store, queries, corpus).cached
    (tmp_path / "elsewhere").mkdir()
    moved = write_jsonl(tmp_path / "elsewhere" / "corpus.jsonl", CORPUS)  # same file in another place: the same data
    assert compose_ids(store, queries, moved).artifact.version == first.artifact.version
    write_jsonl(corpus, CORPUS + [{"id": "tax-4", "text": "Customs duty is paid on imported goods."}])
    changed = compose_ids(store, queries, corpus)
    assert not changed.cached and changed.artifact.version != first.artifact.version


def test_an_unknown_id_names_file_line_and_id(store: Store, tmp_path: Path):
    bad = [QUERIES[0], {"query_text": "What is arson?", "positive_passages": ["crim-99"]}]
    queries, corpus = write_lexdpr(tmp_path, queries=bad)
    with pytest.raises(InputError, match=r"queries\.jsonl:2: column 'positive_passages': unknown id 'crim-99'"):
        compose_ids(store, queries, corpus)
    bad = [{"query_text": "What is theft?", "positive_passages": ["crim-1"], "hard_negatives": ["nope"]}]
    queries, corpus = write_lexdpr(tmp_path, queries=bad)
    with pytest.raises(InputError, match=r"queries\.jsonl:1: column 'hard_negatives': unknown id 'nope'"):
        compose_ids(store, queries, corpus)
    assert store.versions("compose") == []


@pytest.mark.parametrize("corpus, message", [
    ([{"id": "a", "text": "first text here"}, {"id": "a", "text": "another text"}],
     r"corpus\.jsonl:2: id 'a' is given again with another text \(first on line 1\)"),
    ([{"id": "a", "text": "first text here"}, {"text": "no id"}], r"corpus\.jsonl:2: corpus row without 'id'"),
    ([{"id": ["a"], "text": "first text here"}], r"corpus\.jsonl:1: column 'id': expected an id"),
    ([{"id": "a", "text": 5}], r"corpus\.jsonl:1: column 'text': expected text"),
])
def test_a_bad_corpus_file_names_file_and_line(store: Store, tmp_path: Path, corpus: list, message: str):
    queries, corpus_path = write_lexdpr(tmp_path, queries=[{"query_text": "q", "positive_passages": ["a"]}],
                                        corpus=corpus)
    with pytest.raises(InputError, match=message):
        compose_ids(store, queries, corpus_path)


def test_id_based_rows_need_the_corpus_file(store: Store, tmp_path: Path):
    queries, _ = write_lexdpr(tmp_path)
    with pytest.raises(PipeError, match=r"queries\.jsonl:1: id-based rows .* need the corpus file .*--corpus-file"):
        compose_ids(store, queries, None)
    with pytest.raises(InputError, match=r"queries\.jsonl:1: row is id-based .*--corpus-file"):
        read_pairs(queries)  # a pairs reader cannot resolve ids on its own


def test_text_rows_beside_a_corpus_file_take_its_ids(store: Store, tmp_path: Path):
    queries, corpus = write_lexdpr(tmp_path)
    glossary = tmp_path / "extra.csv"
    glossary.write_text("term,definition\nVAT,Value added tax is charged on the supply of goods and services.\n"
                        "customs,Duty paid on goods brought into the country.\n", encoding="utf-8")
    artifact = run_compose(store, ComposeConfig(corpus_file=str(corpus), **NO_SPLITS),
                           inputs=[queries, glossary]).artifact
    rows = {r["anchor"]: r for r in read_pairs(artifact.file(pairs_file("train")))}
    assert rows["VAT"]["positive_ids"] == ["tax-3"]  # the same text as a corpus document: its id
    customs = "Duty paid on goods brought into the country."
    assert rows["customs"]["positive_ids"] == [doc_id(customs)]  # elsewhere: the content hash
    assert rows["customs"]["query_id"] == rows["customs"]["id"] and rows["customs"]["negative_ids"] == []
    assert {r["id"] for r in read_corpus(artifact.file(CORPUS_FILE))} == {str(c["id"]) for c in CORPUS} | {doc_id(customs)}


def test_group_columns_are_carried_from_a_crawl_table(store: Store, tmp_path: Path):
    table = tmp_path / "glossary.csv"
    table.write_text("term,definition,section,page\n"
                     "rook,A piece that moves along ranks and files.,R,Glossary of chess\n"
                     "bishop,A piece that moves diagonally any distance.,B,Glossary of chess\n"
                     "bishop,A senior member of the clergy of a church.,B,Glossary of religion\n"
                     "pawn,The least valuable piece of the game.,,Glossary of chess\n", encoding="utf-8")
    artifact = run_compose(store, ComposeConfig(**NO_SPLITS), inputs=[table]).artifact
    rows = {r["anchor"]: r for r in read_jsonl(artifact.file(pairs_file("train")))}
    assert rows["rook"]["group"] == {"section": "R", "page": "Glossary of chess"}
    assert rows["pawn"]["group"] == {"section": "", "page": "Glossary of chess"}  # missing: "", never absent
    assert rows["bishop"]["group"] == {"section": "B", "page": "Glossary of chess"}  # the first row's
    corpus = {r["text"]: r for r in read_jsonl(artifact.file(CORPUS_FILE))}
    assert corpus["A senior member of the clergy of a church."]["group"] == {"section": "B", "page": "Glossary of chess"}
    assert artifact.stats["group_columns"] == {"section": 2, "page": 1}
    assert "negative_ids" not in rows["rook"] and "query_id" not in rows["rook"]  # no ids given: as before


def test_without_group_columns_the_rows_are_as_before(store: Store, tmp_path: Path):
    table = tmp_path / "glossary.csv"
    table.write_text("term,definition\nrook,A piece that moves along ranks and files.\n", encoding="utf-8")
    artifact = run_compose(store, ComposeConfig(**NO_SPLITS), inputs=[table]).artifact
    (row,) = read_jsonl(artifact.file(pairs_file("train")))
    assert list(row) == ["id", "anchor", "positive", "positives", "positive_ids", "hard_negatives", "source"]
    assert list(json.loads(artifact.file(CORPUS_FILE).read_text().splitlines()[0])) == ["id", "text"]
    assert "group_columns" not in artifact.stats
