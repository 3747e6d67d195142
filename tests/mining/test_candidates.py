"""Candidate lists: deterministic ordering, shard merges, reciprocal rank fusion."""

from __future__ import annotations

import numpy as np

from pipe_embed.mining.candidates import (
    Candidates,
    concat_queries,
    merge_topk,
    shard_bounds,
    sort_rows,
)
from pipe_embed.mining.hybrid import rrf_fuse


def test_sort_rows_orders_by_score_then_index_with_empty_slots_last():
    out = sort_rows(np.array([[4, -1, 2, 9]]), np.array([[0.5, 9.0, 0.5, 0.7]]), k=3)
    assert out.ids[0].tolist() == [9, 2, 4]


def test_merge_of_corpus_shards_equals_the_full_top_k():
    rng = np.random.default_rng(0)
    scores = rng.random((6, 40)).astype(np.float32)
    full = sort_rows(np.tile(np.arange(40), (6, 1)), scores, k=5)
    parts = []
    for s in range(3):
        lo, hi = shard_bounds(40, s, 3)
        parts.append(sort_rows(np.tile(np.arange(lo, hi), (6, 1)), scores[:, lo:hi], k=5))
    merged = merge_topk(parts, 5)
    assert (merged.ids == full.ids).all() and np.allclose(merged.scores, full.scores)


def test_query_shards_concatenate_in_order():
    a = Candidates(np.array([[1, 2]]), np.array([[0.9, 0.8]]))
    b = Candidates(np.array([[3, -1, -1]]), np.array([[0.7, 0, 0]]))
    out = concat_queries([a, b])
    assert out.ids.tolist() == [[1, 2, -1], [3, -1, -1]]


def test_shard_bounds_cover_every_item_once():
    covered = [i for s in range(4) for i in range(*shard_bounds(10, s, 4))]
    assert covered == list(range(10))


def test_rrf_sums_reciprocal_ranks_across_lists():
    bm25 = Candidates(np.array([[1, 2, 3]]), np.array([[3.0, 2.0, 1.0]]))
    dense = Candidates(np.array([[3, 4, -1]]), np.array([[0.9, 0.8, 0]]))
    fused = rrf_fuse([bm25, dense], k=4, rrf_k=60)
    expected = {1: 1 / 61, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62}
    assert fused.ids[0].tolist() == [3, 1, 2, 4]  # 2 and 4 tie: lower index first
    assert np.allclose(fused.scores[0], [expected[i] for i in fused.ids[0]])
