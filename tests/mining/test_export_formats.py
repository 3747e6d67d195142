"""LexDPR export (ids kept, round trip through compose), Hugging Face datasets (json and save_to_disk)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.compose.stage import ComposeConfig, run_compose
from pipe_embed.pipeline.core.pairs import CORPUS_FILE, hf_features, pairs_file, read_jsonl, read_pairs
from pipe_embed.pipeline.core.store import Artifact, Store
from tests.pipeline.compose.lexdpr_data import CORPUS, QUERIES, write_jsonl, write_lexdpr

datasets = pytest.importorskip("datasets")


def lexdpr_compose(store: Store, directory: Path, **kw) -> Artifact:
    queries, corpus = write_lexdpr(directory)
    config = ComposeConfig(corpus_file=str(corpus), group_cols=["law"], dev_fraction=0.0, test_fraction=0.0, **kw)
    return run_compose(store, config, inputs=[queries]).artifact


def test_lexdpr_export_keeps_the_users_ids_and_composes_back(store: Store, tmp_path: Path):
    compose = lexdpr_compose(store, tmp_path / "in")
    config = MineConfig(method="bm25", num_negatives=2, range_max=10, same_group="law", formats=["lexdpr"])
    mine = run_mine(store, config, compose).artifact
    queries = {q["query_id"]: q for q in read_jsonl(mine.file("export/lexdpr/queries.jsonl"))}
    assert set(queries) == {q["query_id"] for q in QUERIES}
    assert queries["q4"]["positive_passages"] == ["7"] and queries["q5"]["positive_passages"] == ["crim-2", "crim-3"]
    assert queries["q3"]["query_text"] == "What is theft?"
    laws = {str(c["id"]): c["law"] for c in CORPUS}
    for q in queries.values():  # negatives are ids of the corpus, from the same law as the positive
        assert q["hard_negatives"] and not set(q["hard_negatives"]) & set(q["positive_passages"])
        assert {laws[i] for i in q["hard_negatives"]} == {laws[q["positive_passages"][0]]}
    mined = {r["query_id"]: r for r in read_pairs(mine.file("pairs.jsonl"))}
    assert all(mined[k]["negative_ids"] == q["hard_negatives"] for k, q in queries.items())
    corpus = read_jsonl(mine.file("export/lexdpr/corpus.jsonl"))
    assert {c["id"] for c in corpus} == set(laws)  # the whole corpus, distractors included, under the user's ids
    assert mine.stats["exports"]["lexdpr"] == {"rows": len(QUERIES), "anchors_left_out": 0, "documents": len(CORPUS)}
    # the export is LexDPR input again: compose it back, the ids and negatives survive
    again = run_compose(store, ComposeConfig(corpus_file=str(mine.file("export/lexdpr/corpus.jsonl")),
                                             dev_fraction=0.0, test_fraction=0.0),
                        inputs=[mine.file("export/lexdpr/queries.jsonl")]).artifact
    back = {r["query_id"]: r for r in read_pairs(again.file(pairs_file("train")))}
    for key, q in queries.items():
        assert back[key]["positive_ids"] == q["positive_passages"]
        assert back[key]["negative_ids"] == q["hard_negatives"]
        assert back[key]["positives"] == mined[key]["positives"]


def _load_json(path: Path | dict, cache: Path, **kw):
    return datasets.load_dataset("json", data_files={k: str(v) for k, v in path.items()} if isinstance(path, dict)
                                 else str(path), cache_dir=str(cache), **kw)


def test_every_pairs_file_loads_with_datasets_json(store: Store, tmp_path: Path):
    # a mixed compose: id-based rows, a crawl-like table with sections, FlagEmbedding rows with and without negatives
    queries, corpus = write_lexdpr(tmp_path / "in")
    table = tmp_path / "glossary.csv"
    table.write_text("term,definition,section,page\nrook,A piece that moves along ranks and files.,R,Chess\n"
                     "bishop,A piece that moves diagonally any distance.,B,Chess\n", encoding="utf-8")
    flag = write_jsonl(tmp_path / "flag.jsonl", [
        {"query": "pawn", "pos": ["The least valuable piece of the game."], "neg": ["A piece that moves diagonally."]},
        {"query": "king", "pos": ["The piece that must be protected from checkmate."]}])
    compose = run_compose(store, ComposeConfig(corpus_file=str(corpus), group_cols=["law", "section"],
                                               dev_fraction=0.3, test_fraction=0.3),
                          inputs=[queries, table, flag]).artifact
    mine = run_mine(store, MineConfig(method="bm25", num_negatives=2, range_max=10), compose).artifact
    files = {"train": compose.file(pairs_file("train")), "dev": compose.file(pairs_file("dev")),
             "test": compose.file(pairs_file("test"))}
    for path in [*files.values(), compose.file(CORPUS_FILE), mine.file("pairs.jsonl")]:
        rows = read_jsonl(path)
        assert rows, path
        assert len({tuple(r) for r in rows}) == 1, f"{path.name}: rows differ in their keys"
        for key in rows[0]:  # one JSON type per key (an empty list counts as a list)
            assert len({type(r[key]).__name__ for r in rows}) == 1, f"{path.name}: '{key}' changes type"
    for name, path in files.items():  # each file on its own, as it is
        assert _load_json(path, tmp_path / "cache")["train"].to_list() == read_jsonl(path), name
    # several at once: JSON cannot type a split whose lists are all empty, so give the types
    splits = _load_json(files, tmp_path / "cache", features=hf_features(*files.values()))
    assert {k: len(v) for k, v in splits.items()} == {k: len(read_jsonl(p)) for k, p in files.items()}
    features = splits["train"].features
    assert features["positive_ids"].feature.dtype == "string" and set(features["group"]) == {"law", "section"}
    mined = _load_json(mine.file("pairs.jsonl"), tmp_path / "cache")["train"]
    assert mined.features["negative_scores"].feature.dtype == "float64"
    assert mined.to_list() == read_jsonl(mine.file("pairs.jsonl"))
    corpus_ds = _load_json(compose.file(CORPUS_FILE), tmp_path / "cache")["train"]
    assert "7" in corpus_ds["id"] and len(corpus_ds) == len(read_jsonl(compose.file(CORPUS_FILE)))


def test_hf_export_is_a_typed_save_to_disk_dataset(store: Store, tmp_path: Path):
    compose = lexdpr_compose(store, tmp_path / "in")
    mine = run_mine(store, MineConfig(method="bm25", num_negatives=2, range_max=10, formats=["hf", "flag"]),
                    compose).artifact
    loaded = datasets.load_from_disk(str(mine.file("export/hf")))
    assert list(loaded) == ["train"]
    rows = read_jsonl(mine.file("pairs.jsonl"))
    assert loaded["train"].to_list() == rows
    features = loaded["train"].features
    assert features["hard_negatives"].feature.dtype == "string" and features["positive_score"].dtype == "float64"
    assert mine.stats["exports"]["hf"] == {"rows": len(rows), "anchors_left_out": 0}
    assert json.loads(mine.file("manifest.json").read_text())["config"]["formats"] == ["hf", "flag"]


def test_hf_types_hold_when_every_list_is_empty(tmp_path: Path):
    from pipe_embed.mining.export import to_hf_dataset

    rows = [{"id": "a1", "anchor": "rook", "positive": "p", "positives": ["p"], "positive_ids": ["d1"],
             "hard_negatives": [], "negative_ids": [], "negative_scores": [], "positive_score": 1.0,
             "extra": 1},
            {"id": "a2", "anchor": "pawn", "positive": "q", "positives": ["q"], "positive_ids": ["d2"],
             "hard_negatives": [], "negative_ids": [], "negative_scores": [], "positive_score": 2.5,
             "extra": "mixed", "group": {"section": "P"}}]
    ds = to_hf_dataset(rows)
    assert ds.features["hard_negatives"].feature.dtype == "string"  # not null: it concatenates with mined rows
    assert ds.features["negative_scores"].feature.dtype == "float64"
    assert ds["extra"] == ["1", '"mixed"']  # a column of no single type is kept as JSON text
    assert ds["group"] == [None, {"section": "P"}]
