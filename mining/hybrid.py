"""Hybrid candidates: BM25 and dense lists fused by reciprocal rank fusion (RRF)."""

from __future__ import annotations

import numpy as np

from pipe_embed.mining.candidates import NO_ID, Candidates, sort_rows


def rrf_fuse(lists: list[Candidates], k: int, rrf_k: int = 60) -> Candidates:
    """Fuse ranked lists per query: score(d) = sum over lists of 1 / (rrf_k + rank(d)), rank from 1.

    A document missing from a list contributes nothing for it. Ties are broken by corpus index.
    """
    if not lists:
        raise ValueError("nothing to fuse")
    n = len(lists[0])
    if any(len(c) != n for c in lists):
        raise ValueError("lists to fuse cover different numbers of queries")
    rows, ids, contrib = [], [], []
    for cands in lists:
        r, c = np.nonzero(cands.ids != NO_ID)
        rows.append(r)
        ids.append(cands.ids[r, c])
        contrib.append(1.0 / (rrf_k + c + 1.0))
    row = np.concatenate(rows).astype(np.int64)
    doc = np.concatenate(ids).astype(np.int64)
    value = np.concatenate(contrib)
    if len(row) == 0:
        return Candidates.empty(n, k)
    width = int(doc.max()) + 1
    keys, inverse = np.unique(row * width + doc, return_inverse=True)
    fused = np.bincount(inverse, weights=value)
    key_rows, key_docs = keys // width, keys % width
    counts = np.bincount(key_rows, minlength=n)
    m = max(int(counts.max()), 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.arange(len(keys)) - starts[key_rows]
    out_ids = np.full((n, m), NO_ID, dtype=np.int64)
    out_scores = np.full((n, m), -np.inf, dtype=np.float64)
    out_ids[key_rows, col] = key_docs
    out_scores[key_rows, col] = fused
    return sort_rows(out_ids, out_scores, k)
