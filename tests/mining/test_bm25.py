"""BM25: tokenisation options, bm25s vs rank-bm25 parity, pair scores, compose-time negatives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipe_embed.mining.bm25 import (
    TokenizerConfig,
    bm25_negatives_for_pairs,
    make_index,
    tie_aware_overlap,
    tokenize,
)
from pipe_embed.pipeline.core.pairs import normalize_key
from tests.mining.conftest import (
    GLOSSARY,
    ROOK_DUPLICATE,
    ROOK_SECOND,
    chess_pairs,
    row,
)


def test_tokenizer_options():
    text = ["The Rooks and Moving"]
    assert tokenize(text) == [["rook", "move"]]
    assert tokenize(text, TokenizerConfig(stemmer=None)) == [["rooks", "moving"]]
    assert tokenize(text, TokenizerConfig(stopwords=None, stemmer=None)) == [["the", "rooks", "and", "moving"]]
    assert tokenize(text, TokenizerConfig(lowercase=False, stopwords=None, stemmer=None))[0][1] == "Rooks"


def test_bm25s_matches_rank_bm25_on_the_chess_glossary(chess_html: Path):
    pairs = chess_pairs(chess_html)
    docs, queries = tokenize([d for _, d in pairs]), tokenize([t for t, _ in pairs])
    reference = make_index(docs, "rank_bm25")
    robertson = make_index(docs, "bm25s", method="robertson")
    lucene = make_index(docs, "bm25s")
    got_r, got_l = robertson.search(queries, 10), lucene.search(queries, 10)
    ref_scores = [reference.full_scores(q) for q in queries]
    asked = [i for i, q in enumerate(queries) if q]
    # Robertson IDF is BM25Okapi's: identical top 10 (ties at the 10th score count as agreement) ...
    assert all(tie_aware_overlap(got_r.ids[i], ref_scores[i], 10) == 1.0 for i in asked)
    # ... and scores equal up to BM25Okapi's constant (k1 + 1) factor
    for i in asked[:50]:
        found = got_r.ids[i][got_r.ids[i] >= 0]
        assert np.allclose(ref_scores[i][found], 2.5 * got_r.scores[i][: len(found)], rtol=1e-4)
    # the default Lucene IDF differs slightly
    assert np.mean([tie_aware_overlap(got_l.ids[i], ref_scores[i], 10) for i in asked]) >= 0.95
    # the rank_bm25 backend's own search agrees with its full scores
    ref_search = reference.search(queries[:20], 10)
    assert all(tie_aware_overlap(ref_search.ids[i], ref_scores[i], 10) == 1.0 for i in range(20) if queries[i])


def test_only_documents_sharing_a_term_are_candidates_and_pair_scores_agree():
    docs = tokenize([d for _, d in GLOSSARY])
    index = make_index(docs)
    queries = tokenize(["rook", "gradient", "zebra"])
    found = index.search(queries, 50)
    assert (found.ids[2] == -1).all()  # no shared term: no candidate at all
    assert set(found.ids[0][found.ids[0] >= 0]) == {i for i, d in enumerate(docs) if "rook" in d}
    q = np.array([0, 1])
    d = found.ids[[0, 1], [0, 0]]
    assert np.allclose(index.score_pairs(queries, q, d), found.scores[[0, 1], [0, 0]])
    assert index.score_pairs(queries, np.array([2]), np.array([0]))[0] == 0


@pytest.mark.parametrize("backend", ["bm25s", "rank_bm25"])
def test_bm25_negatives_for_pairs_never_returns_a_positive_or_its_duplicate(backend: str):
    rows = [row(t, [d, ROOK_SECOND] if t == "rook" else [d]) for t, d in GLOSSARY]
    rows.append(row("castle (noun)", [ROOK_DUPLICATE]))
    out = bm25_negatives_for_pairs(rows, k=3, backend=backend)
    assert len(out) == len(rows) and all(len(r["hard_negatives"]) <= 3 for r in out)
    by_anchor = {r["anchor"]: r for r in out}
    assert "a move of the king and a rook together" in by_anchor["rook"]["hard_negatives"]
    assert "the chess piece that must be protected from checkmate" in by_anchor["checkmate"]["hard_negatives"]
    for r in out:
        own = {normalize_key(p) for p in r["positives"]} | {normalize_key(r["anchor"])}
        assert not own & {normalize_key(n) for n in r["hard_negatives"]}
        assert len(r["negative_ids"]) == len(r["negative_scores"]) == len(r["hard_negatives"])
        assert r["negative_scores"] == sorted(r["negative_scores"], reverse=True)
    castle = next(r for r in out if r["anchor"] == "castle (noun)")
    assert ROOK_SECOND not in castle["hard_negatives"]
    rows_before = [dict(r) for r in rows]
    assert rows == rows_before  # the input rows are not changed


def test_bm25_negatives_for_pairs_with_an_explicit_corpus():
    rows = [row("chess rook", ["a chess piece that moves along ranks and files"])]
    corpus = ["a chess piece that moves along ranks and files", "a chess piece moving diagonally",
              "a cake recipe"]
    out = bm25_negatives_for_pairs(rows, corpus, k=5)
    assert out[0]["hard_negatives"] == ["a chess piece moving diagonally"]  # shares terms; the cake does not
