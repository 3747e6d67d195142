"""The chess glossary fixture as compose-like and mine-like artifacts (for the real-model tests)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.store import Artifact, Store
from tests.training.conftest import _row, make_compose, make_mine


def glossary_pairs(html_path: Path) -> list[tuple[str, str]]:
    """(term, definition) from the page's <dt>/<dd> lists; several <dd> of one term are joined."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html_path.read_text(encoding="utf-8"), "lxml")
    pairs = []
    for dt in soup.find_all("dt"):
        term = dt.get_text(" ", strip=True)
        parts, node = [], dt.find_next_sibling()
        while node is not None and node.name == "dd":
            parts.append(node.get_text(" ", strip=True))
            node = node.find_next_sibling()
        definition = " ".join(p for p in parts if p)
        if term and len(definition) >= 10:
            pairs.append((term, definition))
    return pairs


def split_of(term: str, dev_share: float) -> str:
    """dev, test (10%) or train, by a stable hash of the term."""
    bucket = int(hashlib.sha1(term.lower().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "dev" if bucket < dev_share else "test" if bucket < dev_share + 0.1 else "train"


def chess_compose(store: Store, html_path: Path, dev_share: float = 0.2, limit: int | None = None) -> Artifact:
    """A compose-like artifact of the glossary (its first `limit` terms), split by a hash of the term."""
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "dev": [], "test": []}
    seen = set()
    for term, definition in glossary_pairs(html_path)[:limit]:
        if term.lower() in seen:
            continue
        seen.add(term.lower())
        splits[split_of(term, dev_share)].append(_row(term, [definition]))
    return make_compose(store, splits)


def mine_with_model(store: Store, compose: Artifact, model: Any, *, top: int = 30, count: int = 3,
                    relative_margin: float = 0.05) -> Artifact:
    """Hard negatives from the base model: the best-scoring other definitions, kept only when they score
    below (1 - margin) x the positive's score (the false-negative guard mining uses)."""
    from pipe_embed.pipeline.core.pairs import read_pairs

    rows = read_pairs(compose.file("pairs.jsonl"))
    texts = sorted({p for r in rows for p in r["positives"]})
    docs = model.encode_document(texts, convert_to_tensor=True, batch_size=64)
    queries = model.encode_query([r["anchor"] for r in rows], convert_to_tensor=True, batch_size=64)
    scores = model.similarity(queries, docs).cpu().numpy()
    index = {t: i for i, t in enumerate(texts)}
    negatives = {}
    for i, row in enumerate(rows):
        positive_score = max(scores[i][index[p]] for p in row["positives"])
        order = scores[i].argsort()[::-1][:top]
        picked = [texts[j] for j in order if texts[j] not in row["positives"]
                  and scores[i][j] <= positive_score * (1 - relative_margin)]
        negatives[row["anchor"]] = picked[:count]
    return make_mine(store, compose, negatives)
