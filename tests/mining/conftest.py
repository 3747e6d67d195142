"""Fixtures for mining tests: a small compose-like artifact written with store.run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipe_embed.pipeline.core.hashing import hash_value
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
    ("bishop", "a chess piece that moves diagonally across the board"),
    ("knight", "a chess piece that moves in an L shape and can jump over pieces"),
    ("pawn", "the least valuable chess piece, moving forward one square"),
    ("queen", "the most powerful chess piece, moving along ranks, files and diagonals"),
    ("king", "the chess piece that must be protected from checkmate"),
    ("castling", "a move of the king and a rook together"),
    ("checkmate", "a position in which the king is attacked and cannot escape"),
    ("stalemate", "a position in which the side to move has no legal move and is not in check"),
    ("fork", "a tactic where one piece attacks two enemy pieces at once"),
    ("pin", "a tactic where a piece cannot move without exposing a more valuable piece behind it"),
    ("gambit", "an opening that sacrifices material for development"),
    ("gradient descent", "an optimisation method following the negative gradient"),
    ("overfitting", "when a model learns noise in the training data"),
    ("dropout", "randomly zeroing activations during training to regularise a model"),
    ("learning rate", "the step size of each optimisation update"),
    ("epoch", "one full pass over the training data"),
    ("batch", "a group of examples processed together in one training step"),
]
DEV = {"fork", "epoch"}
TEST = {"pin", "batch"}
# rook has a second definition; "Castle" duplicates rook's second definition up to case;
# "rook" appears again in dev with another definition (another definition of the same term).
ROOK_SECOND = "the castle shaped piece that starts in the corner"
ROOK_DUPLICATE = "The  Castle shaped piece that starts in the corner"
ROOK_DEV = "a piece worth five pawns in the usual valuation"


def row(term: str, positives: list[str]) -> dict[str, Any]:
    return {"id": anchor_id(term), "anchor": term, "positive": positives[0], "positives": positives,
            "positive_ids": [doc_id(p) for p in positives], "hard_negatives": [], "source": "test"}


def split_rows() -> dict[str, list[dict[str, Any]]]:
    """Rows per split; see the comments above for the traps they hold."""
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "dev": [], "test": []}
    for term, definition in GLOSSARY:
        positives = [definition, ROOK_SECOND] if term == "rook" else [definition]
        split = "dev" if term in DEV else "test" if term in TEST else "train"
        splits[split].append(row(term, positives))
    splits["train"].append(row("castle (noun)", [ROOK_DUPLICATE]))
    splits["dev"].append(row("Rook", [ROOK_DEV]))
    return splits


def make_compose(store: Store, splits: dict[str, list[dict[str, Any]]] | None = None,
                 corpus_rows: list[dict[str, str]] | None = None) -> Artifact:
    """A compose-like artifact: pairs per split and a corpus of every positive (or the given one)."""
    splits = splits if splits is not None else split_rows()

    def build(work: Path) -> StageResult:
        corpus: dict[str, str] = {}
        for name, rows in splits.items():
            write_jsonl(work / pairs_file(name), rows)
            for r in rows:
                for pid, text in zip(r["positive_ids"], r["positives"]):
                    corpus.setdefault(pid, text)
        items = corpus_rows if corpus_rows is not None else [{"id": k, "text": v} for k, v in corpus.items()]
        write_jsonl(work / CORPUS_FILE, items)
        return StageResult(stats={"anchors": sum(len(v) for v in splits.values())})

    return store.run(stage="compose", format_version=1, config={"fixture": hash_value(splits),
                     "corpus": hash_value(corpus_rows)}, inputs=[], build=build).artifact


def chess_pairs(path: Path, limit: int = 300) -> list[tuple[str, str]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "lxml")
    out = []
    for dt in soup.find_all("dt"):
        dd = dt.find_next_sibling("dd")
        if dd is not None and len(dd.get_text(strip=True)) >= 10:
            out.append((dt.get_text(" ", strip=True), dd.get_text(" ", strip=True)))
    return out[:limit]


@pytest.fixture()
def compose(store: Store) -> Artifact:
    return make_compose(store)


class TrigramEncoder:
    """Mixin over the real Encoder: the cache, chunking and counting are real, the 'model' is hashed
    character trigrams, so similarities are deterministic (the tiny random model's vocabulary is not)."""

    def _encode_now(self, texts, prompt):  # type: ignore[no-untyped-def]
        import hashlib

        import numpy as np

        vecs = np.zeros((len(texts), 256), dtype=np.float32)
        for i, text in enumerate(texts):
            padded = f"  {(prompt or '') + text.lower()} "
            for j in range(len(padded) - 2):
                vecs[i, int(hashlib.md5(padded[j:j + 3].encode()).hexdigest()[:6], 16) % 256] += 1.0
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)
        self.encoded += len(texts)
        return vecs


@pytest.fixture()
def trigram_encoder(store: Store, tiny_model_path: Path):
    """A deterministic encoder writing to the store's embedding cache (fingerprint: the tiny model's)."""
    from pipe_embed.mining.dense import Encoder
    from pipe_embed.mining.stage import cache_root

    cls = type("TrigramModelEncoder", (TrigramEncoder, Encoder), {})
    return lambda: cls(tiny_model_path, cache_root=cache_root(store))
