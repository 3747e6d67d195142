"""The real bundled all-MiniLM-L6-v2 on a slice of the chess glossary (the issue's "done when")."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.core.pairs import normalize_key, read_pairs
from pipe_embed.pipeline.core.store import Store
from tests.mining.conftest import chess_pairs, make_compose, row

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_chess_bm25_and_faiss_mining_with_the_real_model(store: Store, chess_html: Path):
    pairs = chess_pairs(chess_html, limit=160)
    seen, splits = set(), {"train": [], "dev": [], "test": []}
    for i, (term, definition) in enumerate(pairs):
        if normalize_key(term) in seen:
            continue
        seen.add(normalize_key(term))
        splits["dev" if i % 10 == 0 else "train"].append(row(term, [definition]))
    compose = make_compose(store, splits)

    for method in ("bm25", "faiss"):
        art = run_mine(store, MineConfig(method=method, formats=["flag"]), compose).artifact
        rows = read_pairs(art.file("pairs.jsonl"))
        assert len(rows) == len(splits["train"])
        assert art.file("diagnostics/diagnostics.json").is_file() and art.file("diagnostics/scores.png").is_file()
        for r in rows:
            positives = {normalize_key(p) for p in r["positives"]} | {normalize_key(r["anchor"])}
            assert not positives & {normalize_key(n) for n in r["hard_negatives"]}
            if method == "faiss":
                for score in r["negative_scores"]:
                    assert score <= 0.95 * r["positive_score"] + 1e-6
        assert art.stats["negatives"] > len(rows)  # most anchors get negatives
        if method == "faiss":
            assert art.stats["encoded_texts"] > 0
            assert art.metrics["positive_at_1"] > 0.2  # the real model finds many definitions first
            again = run_mine(store, MineConfig(method=method, formats=["flag"]), compose, force=True).artifact
            assert again.stats["encoded_texts"] == 0
            assert read_pairs(again.file("pairs.jsonl")) == rows
