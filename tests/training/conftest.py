"""Fixtures for training tests: small compose-like and mine-like artifacts built with store.run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipe_embed.pipeline.core.pairs import (
    CORPUS_FILE,
    anchor_id,
    doc_id,
    pairs_file,
    write_jsonl,
)
from pipe_embed.pipeline.core.store import Artifact, StageResult, Store

GLOSSARY = [
    ("rook", "a chess piece that moves along ranks and files"),
    ("bishop", "a piece that moves diagonally across the board"),
    ("knight", "a piece that moves in an L shape and can jump"),
    ("pawn", "the least valuable piece moving forward one square"),
    ("castling", "a move of the king and a rook together"),
    ("checkmate", "a position in which the king is attacked and cannot escape"),
    ("stalemate", "a position in which the side to move has no legal move and is not in check"),
    ("fork", "a tactic where one piece attacks two enemy pieces at once"),
    ("pin", "a piece cannot move without exposing a more valuable piece behind it"),
    ("gambit", "an opening that sacrifices material for development"),
    ("gradient descent", "an optimisation method following the negative gradient"),
    ("overfitting", "when a model learns noise in the training data"),
    ("dropout", "randomly zeroing activations during training to regularise"),
    ("learning rate", "the step size of each optimisation update"),
    ("epoch", "one full pass over the training data"),
    ("batch", "a group of examples processed together in one step"),
]
DEV = {"fork", "epoch"}
TEST = {"pin", "batch"}


def _row(term: str, positives: list[str]) -> dict[str, Any]:
    return {"id": anchor_id(term), "anchor": term, "positive": positives[0], "positives": positives,
            "positive_ids": [doc_id(p) for p in positives], "hard_negatives": [], "source": "test"}


def split_rows(glossary: list[tuple[str, str]] = GLOSSARY) -> dict[str, list[dict[str, Any]]]:
    """Canonical rows of the test glossary per split (rook has a second definition)."""
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "dev": [], "test": []}
    for term, definition in glossary:
        positives = [definition]
        if term == "rook":
            positives.append("the castle shaped piece that starts in the corner")
        split = "dev" if term in DEV else "test" if term in TEST else "train"
        splits[split].append(_row(term, positives))
    return splits


def make_compose(store: Store, splits: dict[str, list[dict[str, Any]]] | None = None) -> Artifact:
    """A compose-like artifact: pairs files per split and the corpus of every positive."""
    splits = splits or split_rows()

    def build(work: Path) -> StageResult:
        corpus = {}
        for name, rows in splits.items():
            write_jsonl(work / pairs_file(name), rows)
            for row in rows:
                for pid, text in zip(row["positive_ids"], row["positives"]):
                    corpus[pid] = text
        write_jsonl(work / CORPUS_FILE, [{"id": k, "text": v} for k, v in corpus.items()])
        return StageResult(stats={"anchors": sum(len(r) for r in splits.values())})

    return store.run(stage="compose", format_version=1, config={"test": len(splits["train"])}, inputs=[],
                     build=build).artifact


def make_mine(store: Store, compose: Artifact, negatives: dict[str, list[str]] | None = None) -> Artifact:
    """A mine-like artifact on top of `compose`: train rows with a variable number of hard negatives."""
    from pipe_embed.pipeline.core.pairs import read_pairs

    rows = read_pairs(compose.file(pairs_file("train")))
    if negatives is None:
        texts = [r["positive"] for r in rows]
        negatives = {}
        for i, row in enumerate(rows):
            count = i % 4  # 0..3 negatives: anchors short of negatives must still train
            negatives[row["anchor"]] = [t for t in texts if t not in row["positives"]][i % 3: i % 3 + count]

    def build(work: Path) -> StageResult:
        out = [{**row, "hard_negatives": negatives.get(row["anchor"], [])} for row in rows]
        write_jsonl(work / pairs_file("train"), out)
        return StageResult(stats={"rows": len(out)})

    return store.run(stage="mine", format_version=1, config={"method": "test"}, inputs=[compose],
                     build=build).artifact


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: the tiny model is too small to gain from more, and on a shared 2-core
    machine oversubscribed threads make these tests several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _warnings_said_again():
    """Each test sees the once-per-process warnings afresh."""
    from pipe_embed.training import evaluate

    evaluate._SAID.clear()
    yield
    evaluate._SAID.clear()


@pytest.fixture()
def compose_artifact(store: Store) -> Artifact:
    return make_compose(store)


@pytest.fixture()
def mine_artifact(store: Store, compose_artifact: Artifact) -> Artifact:
    return make_mine(store, compose_artifact)
