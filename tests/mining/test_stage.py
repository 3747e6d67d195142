"""The mine stage on a small compose-like artifact: bm25, faiss, hybrid, re-mining, exports, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.pairs import normalize_key, read_jsonl, read_pairs
from pipe_embed.pipeline.core.store import Artifact, Store
from tests.mining.conftest import (
    ROOK_DEV,
    ROOK_DUPLICATE,
    ROOK_SECOND,
    make_compose,
    row,
)


def mined_rows(artifact: Artifact) -> dict[str, dict]:
    return {r["anchor"]: r for r in read_pairs(artifact.file("pairs.jsonl"))}


def assert_no_false_negatives(rows: dict[str, dict]) -> None:
    for r in rows.values():
        own = {normalize_key(p) for p in r["positives"]} | {normalize_key(r["anchor"])}
        assert not own & {normalize_key(n) for n in r["hard_negatives"]}, r["anchor"]
    assert ROOK_DEV not in rows["rook"]["hard_negatives"]  # another definition of the same term
    assert ROOK_DUPLICATE not in rows["rook"]["hard_negatives"]
    assert ROOK_SECOND not in rows["castle (noun)"]["hard_negatives"]


def dense_config(model: Path, **kw) -> MineConfig:
    return MineConfig(method="faiss", model=str(model), range_max=20, **kw)


def test_bm25_mine_writes_pairs_diagnostics_and_manifest(store: Store, compose: Artifact):
    outcome = run_mine(store, MineConfig(method="bm25", num_negatives=2, range_max=10), compose)
    art = outcome.artifact
    rows = mined_rows(art)
    assert set(rows) == {r["anchor"] for r in read_pairs(compose.file("pairs.jsonl"))}
    assert_no_false_negatives(rows)
    assert "a move of the king and a rook together" in rows["rook"]["hard_negatives"]
    for r in rows.values():
        assert len(r["negative_ids"]) == len(r["negative_scores"]) == len(r["hard_negatives"]) <= 2
        assert isinstance(r["positive_score"], float)
    diag = json.loads(art.file("diagnostics/diagnostics.json").read_text())
    assert art.file("diagnostics/scores.png").stat().st_size > 1000
    assert diag["short_anchors"] == art.stats["short_of_negatives"] > 0  # BM25 never pads
    assert art.config["relative_margin"] is None  # off for bm25
    assert not (art.path.parent / ".tmp").exists()
    again = run_mine(store, MineConfig(method="bm25", num_negatives=2, range_max=10), "compose@latest")
    assert again.cached and again.artifact.version == art.version


def test_faiss_mine_respects_the_relative_margin_and_reuses_the_cache(store: Store, compose: Artifact,
                                                                      tiny_model_path: Path, trigram_encoder):
    first = run_mine(store, dense_config(tiny_model_path, formats=["flag", "st-ntuple", "st-triplet"]), compose,
                     encoder=trigram_encoder())
    art = first.artifact
    rows = mined_rows(art)
    assert_no_false_negatives(rows)
    assert art.config["relative_margin"] == 0.05  # the dense default
    assert art.stats["dropped"]["relative_margin"] > 0 and art.stats["negatives"] > 0
    for r in rows.values():
        for score in r["negative_scores"]:
            assert score <= r["positive_score"] - abs(r["positive_score"]) * 0.05 + 1e-6
    assert art.stats["encoded_texts"] > 0 and art.manifest["fingerprint_extra"]["model"]
    # exports load, with FlagEmbedding's keys
    flag = read_jsonl(art.file("export/flag.jsonl"))
    assert flag and all(set(r) == {"query", "pos", "neg"} and r["neg"] for r in flag)
    ntuple = read_jsonl(art.file("export/st-ntuple.jsonl"))
    assert all(list(r) == ["anchor", "positive", "negative_1", "negative_2", "negative_3"] for r in ntuple)
    triplets = read_jsonl(art.file("export/st-triplet.jsonl"))
    assert len(triplets) == sum(len(r["hard_negatives"]) for r in rows.values())
    from datasets import load_dataset

    assert load_dataset("json", data_files=str(art.file("export/st-triplet.jsonl")), split="train").column_names \
        == ["anchor", "positive", "negative"]
    # same weights again: nothing is encoded
    second = run_mine(store, dense_config(tiny_model_path, formats=["flag", "st-ntuple", "st-triplet"]), compose,
                      force=True, encoder=trigram_encoder())
    assert second.artifact.stats["encoded_texts"] == 0 and second.artifact.stats["cache_hits"] > 0
    assert mined_rows(second.artifact) == rows


def test_hybrid_and_positive_similarity_filter(store: Store, compose: Artifact, tiny_model_path: Path,
                                               trigram_encoder):
    cfg = dataclasses.replace(dense_config(tiny_model_path), method="hybrid", relative_margin=0.0,
                              max_positive_similarity=0.3)
    art = run_mine(store, cfg, compose, encoder=trigram_encoder()).artifact
    rows = mined_rows(art)
    assert_no_false_negatives(rows)
    assert art.stats["dropped"]["positive_similarity"] > 0
    assert art.stats["encoded_texts"] > 0


def test_remining_reports_overlap_and_can_merge_previous_negatives(store: Store, compose: Artifact,
                                                                   tiny_model_path: Path, trigram_encoder):
    first = run_mine(store, dense_config(tiny_model_path), compose, encoder=trigram_encoder()).artifact
    again = run_mine(store, dense_config(tiny_model_path), first, encoder=trigram_encoder()).artifact
    assert again.inputs == [{"stage": "mine", "version": first.version}]
    assert again.stats["overlap_with_previous"] == 1.0  # same model, same negatives
    diag = json.loads(again.file("diagnostics/diagnostics.json").read_text())
    assert diag["previous_round_overlap"]["share_already_negative"] == 1.0
    bm25 = run_mine(store, MineConfig(method="bm25", range_max=10), compose).artifact
    old = mined_rows(bm25)
    shifted = MineConfig(method="bm25", range_min=3, range_max=10)  # never re-picks last round's top 3
    runs = [(shifted, None), (dense_config(tiny_model_path, relative_margin=0.0), trigram_encoder)]
    for config, make in runs:
        plain = mined_rows(run_mine(store, config, bm25, encoder=make() if make else None).artifact)
        merged = run_mine(store, dataclasses.replace(config, merge_previous=True), bm25,
                          encoder=make() if make else None).artifact
        rows = mined_rows(merged)
        assert_no_false_negatives(rows)
        added = 0
        for anchor, r in rows.items():
            assert r["hard_negatives"][: len(plain[anchor]["hard_negatives"])] == plain[anchor]["hard_negatives"]
            extra = set(r["hard_negatives"]) - set(plain[anchor]["hard_negatives"])
            assert extra <= set(old[anchor]["hard_negatives"])
            added += len(extra)
            if config.relative_margin is not None:  # merged negatives pass this round's filters too
                assert all(score <= r["positive_score"] + 1e-6 for score in r["negative_scores"])
        assert added == merged.stats["merged_previous"]
        if config.method == "bm25":
            assert added > 0


def test_extra_corpus_file_adds_candidates(store: Store, compose: Artifact, tmp_path: Path):
    extra = tmp_path / "extra.txt"
    extra.write_text("a rook lift brings the rook up the board\n\n")
    art = run_mine(store, MineConfig(method="bm25", range_max=10, corpus=str(extra)), compose).artifact
    assert "a rook lift brings the rook up the board" in mined_rows(art)["rook"]["hard_negatives"]
    assert art.stats["extra_corpus_texts"] == 1 and art.manifest["fingerprint_extra"]["corpus_file"]


def test_bad_input_is_one_clear_error_and_leaves_nothing(store: Store, tiny_model_path: Path, tmp_path: Path):
    empty = make_compose(store, {"train": [row("rook", ["a piece"])], "dev": [], "test": []})
    with pytest.raises(PipeError, match="only 1 texts"):
        run_mine(store, MineConfig(method="bm25"), empty)
    no_train = make_compose(store, {"train": [], "dev": [row("rook", ["a piece"])], "test": []})
    with pytest.raises(PipeError, match="train split is empty"):
        run_mine(store, MineConfig(method="bm25"), no_train)
    compose = make_compose(store)
    with pytest.raises(PipeError, match="cannot load model"):
        run_mine(store, MineConfig(method="faiss", model="no-such-org/no-such-model"), compose)
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(PipeError, match="cannot load model"):
        run_mine(store, MineConfig(method="faiss", model=str(broken)), compose)
    with pytest.raises(PipeError, match="corpus file not found"):
        run_mine(store, MineConfig(method="bm25", corpus=str(tmp_path / "missing.txt")), compose)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n")
    with pytest.raises(PipeError, match="holds no text"):
        run_mine(store, MineConfig(method="bm25", corpus=str(blank)), compose)
    with pytest.raises(ConfigError, match="num_negatives"):
        run_mine(store, MineConfig(method="bm25", num_negatives=40, range_max=30), compose)
    with pytest.raises(PipeError, match="compose or mine artifact"):
        run_mine(store, MineConfig(method="bm25"), _fake(store))
    assert store.versions("mine") == []
    assert not [p for p in store.stage_dir("mine").iterdir() if not p.name.startswith(".locks")]


def _fake(store: Store) -> Artifact:
    from pipe_embed.pipeline.core.store import StageResult

    return store.run(stage="train", format_version=1, config={}, inputs=[],
                     build=lambda work: StageResult()).artifact


def test_config_validation_names_the_field():
    for kwargs, field in [({"range_max": 0}, "range_max"), ({"relative_margin": 1.5}, "relative_margin"),
                          ({"formats": ["parquet"]}, "formats"), ({"num_negatives": 0}, "num_negatives"),
                          ({"method": "bm25", "max_positive_similarity": 0.9}, "max_positive_similarity")]:
        with pytest.raises(ConfigError, match=field):
            MineConfig(**kwargs).validate()


def test_scores_stay_ordered_and_random_sampling_is_reproducible(store: Store, compose: Artifact,
                                                                 tiny_model_path: Path, trigram_encoder):
    cfg = dense_config(tiny_model_path, sampling="random", seed=3, relative_margin=0.0)
    a = mined_rows(run_mine(store, cfg, compose, encoder=trigram_encoder()).artifact)
    b = mined_rows(run_mine(store, cfg, compose, force=True, encoder=trigram_encoder()).artifact)
    assert a == b
    for r in a.values():
        assert r["negative_scores"] == sorted(r["negative_scores"], reverse=True)
    assert np.mean([len(r["hard_negatives"]) for r in a.values()]) > 1


def test_default_dense_relative_margin_is_five_percent():
    assert MineConfig(method="faiss").resolved().relative_margin == 0.05
    assert MineConfig(method="hybrid").resolved().relative_margin == 0.05
    assert MineConfig(method="bm25").resolved().relative_margin is None
    assert MineConfig(method="faiss", relative_margin=0.1).resolved().relative_margin == 0.1
