"""The real bundled all-MiniLM-L6-v2 on the chess glossary: mined negatives raise dev MRR@10."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.models import load_model
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.train import run_train
from tests.training.chess import chess_compose, mine_with_model

pytestmark = pytest.mark.integration

MAX_LENGTH = 48  # chess definitions average ~40 tokens; short sequences keep this test within budget


@pytest.fixture()
def all_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_training_with_mined_negatives_beats_the_base_model(store: Store, chess_html: Path, all_threads) -> None:
    # 300 terms: ~190 train anchors, ~80 dev queries against a 300-definition corpus.
    compose = chess_compose(store, chess_html, dev_share=0.2, limit=300)
    miner = load_model(None, device="cpu")
    miner.max_seq_length = MAX_LENGTH
    mine = mine_with_model(store, compose, miner, top=30, count=3, relative_margin=0.05)
    del miner

    config = TrainConfig(batch_size=16, max_steps=6, eval_steps=0, lr=1e-4, max_length=MAX_LENGTH,
                         device="cpu", patience=0, seed=1)
    art = run_train(store, config, mine.ref).artifact

    base, trained = art.metrics["dev_base"], art.metrics["dev"]
    assert trained["queries"] == base["queries"] >= 50
    assert trained["mrr@10"] > base["mrr@10"], (base, trained)
    assert art.stats["negatives_per_row"] == 3 and art.stats["anchors_padded"] < art.stats["anchors"]
