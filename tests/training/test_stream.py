"""data.stream: a pairs file read lazily, pass after pass, in batches free of duplicate texts; training on it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.pairs import normalize_key, write_jsonl
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.config import TrainConfig, load_train_config
from pipe_embed.training.data import (
    PairsFile,
    build_rows,
    pack_batches,
    stream_rows,
    to_dataset,
)


class CountingSource:
    """Rows made on demand, counting every row handed out (a stand-in for a file too big to hold)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.reads = 0
        self.passes = 0

    def __iter__(self) -> Iterator[dict]:
        self.passes += 1
        for i in range(self.count):
            self.reads += 1
            positives = [f"definition number {i}"] + ([f"another sense of {i}"] if i % 10 == 0 else [])
            yield {"anchor": f"term {i}", "positive": positives[0], "positives": positives,
                   "hard_negatives": [f"definition number {(i + j) % self.count}" for j in range(1, 1 + i % 3)]}


def batches(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def test_rows_are_read_lazily_one_counting_pass_then_on_demand() -> None:
    source = CountingSource(500)
    rows = stream_rows(source, batch_size=4, seed=3, buffer=16, pool_size=50)
    assert (source.passes, source.reads) == (1, 500)  # the planning pass: counts, keeps nothing but a sample
    assert rows.num_rows == 550 and rows.num_negatives == 2 and rows.columns == {}
    dataset = to_dataset(rows)
    assert source.reads == 500  # making the dataset reads nothing
    first = next(iter(dataset))
    assert set(first) == {"anchor", "positive", "negative_1", "negative_2"}
    assert source.reads - 500 <= 16 + 4  # one shuffle window and a batch, not the file
    assert rows.stats == {**build_rows(list(CountingSource(500)), seed=3).stats, "stream": True}


def test_each_pass_yields_every_row_once_in_duplicate_free_batches() -> None:
    rows = stream_rows(CountingSource(203), batch_size=8, seed=1, buffer=32)
    one, two = list(rows.stream()), list(rows.stream())
    expected = build_rows(list(CountingSource(203)))
    assert Counter((r["anchor"], r["positive"]) for r in one) == \
        Counter(zip(expected.columns["anchor"], expected.columns["positive"]))
    assert [r["anchor"] for r in one] != [r["anchor"] for r in two]  # a new order each pass
    for batch in batches(one, 8)[:-2]:  # the tail may repeat a text when nothing else is left
        texts = [normalize_key(t) for r in batch for t in r.values()]
        assert len(texts) == len(set(texts)), batch
    for row in one:  # padding never draws the row's own texts
        own = {normalize_key(row["anchor"]), normalize_key(row["positive"])}
        assert not own & {normalize_key(row["negative_1"]), normalize_key(row["negative_2"])}


def test_pack_batches_defers_a_repeated_anchor_to_a_later_batch() -> None:
    rows = [{"anchor": "rook", "positive": "p1"}, {"anchor": "rook", "positive": "p2"},
            {"anchor": "pawn", "positive": "p3"}, {"anchor": "king", "positive": "p4"},
            {"anchor": "rook", "positive": "p5"}, {"anchor": "queen", "positive": "p6"}]
    packed = list(pack_batches(rows, 2))
    assert sorted(r["positive"] for r in packed) == [f"p{i}" for i in range(1, 7)]
    for batch in batches(packed, 2):
        assert len({r["anchor"] for r in batch}) == len(batch), packed


def test_seed_config_data_stream_sets_stream(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_id": "m", "data": {"pairs_path": "pairs.jsonl", "stream": True}}))
    assert load_train_config(path).stream is True


def test_training_streams_a_pairs_file_without_loading_it(store: Store, tiny_model_path: Path, compose_artifact,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipe_embed.training import data
    from pipe_embed.training.train import run_train

    rows = [json.loads(line) for line in compose_artifact.file("pairs.jsonl").read_text().splitlines()]
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, rows)

    def refuse(*_a, **_k):
        raise AssertionError("the whole pairs file was read into memory")

    monkeypatch.setattr(data, "read_pairs", refuse)
    opened = []
    real_iter = PairsFile.__iter__
    monkeypatch.setattr(PairsFile, "__iter__", lambda self: (opened.append(1), real_iter(self))[1])
    config = TrainConfig(model=str(tiny_model_path), device="cpu", batch_size=4, max_steps=5, lr=1e-3,
                         eval_steps=0, patience=0, eval_base=False, warmup_ratio=0.0, pairs_path=str(pairs),
                         stream=True)
    art = run_train(store, config).artifact
    assert art.metrics["train"]["steps"] == 5
    assert art.stats["stream"] is True and art.stats["rows"] == 13  # 12 anchors, rook has 2 definitions
    assert len(opened) == 3  # the planning pass, then 4 batches a pass: the 5th step starts a second pass


def test_training_streams_an_artifact_and_plans_its_steps(store: Store, tiny_model_path: Path,
                                                          mine_artifact) -> None:
    from pipe_embed.training.train import run_train

    config = TrainConfig(model=str(tiny_model_path), device="cpu", batch_size=4, epochs=2, min_steps=0, lr=1e-3, eval_steps=0,
                         patience=0, eval_base=False, warmup_ratio=0.0, stream=True)
    art = run_train(store, config, mine_artifact.ref).artifact
    train = art.metrics["train"]
    assert train["steps"] == train["max_steps"] == 8  # 13 rows / batch 4 = 4 steps a pass, 2 epochs
    assert "dev" in art.metrics and art.stats["negatives_per_row"] == 3
