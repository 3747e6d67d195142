"""Ranked candidate lists (one row per query) and how partial lists merge.

Every retriever (BM25, FAISS, fusion) returns `Candidates`: corpus indices and scores, best first,
padded with id -1 / score -inf. Ties are ordered by corpus index so results are deterministic and
the merge of shard outputs equals the unsharded result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_ID = -1


@dataclass
class Candidates:
    """Top-k corpus indices and scores per query, best first; id -1 marks an empty slot."""

    ids: np.ndarray  # (n_queries, k) int64
    scores: np.ndarray  # (n_queries, k) float32, -inf where ids == -1

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64).reshape(len(self.ids), -1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(self.ids.shape)
        self.scores[self.ids == NO_ID] = -np.inf

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    @classmethod
    def empty(cls, n_queries: int, k: int) -> Candidates:
        """n_queries rows of k empty slots."""
        return cls(np.full((n_queries, k), NO_ID, dtype=np.int64),
                   np.full((n_queries, k), -np.inf, dtype=np.float32))


def sort_rows(ids: np.ndarray, scores: np.ndarray, k: int | None = None) -> Candidates:
    """Order each row by score (descending), ties by corpus index, empty slots last; keep k."""
    ids = np.asarray(ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32).copy()
    scores[ids == NO_ID] = -np.inf
    empty_last = (ids == NO_ID).astype(np.int8)
    safe_ids = np.where(ids == NO_ID, np.iinfo(np.int64).max, ids)
    order = np.lexsort((safe_ids, -scores.astype(np.float64), empty_last), axis=-1)
    if k is not None:
        order = order[:, :k]
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1)
    if k is not None and out_ids.shape[1] < k:
        pad = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=NO_ID)
        out_scores = np.pad(out_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return Candidates(out_ids, out_scores)


def merge_topk(parts: list[Candidates], k: int) -> Candidates:
    """Merge the top-k lists of corpus shards (global ids, same queries) into one top-k list."""
    if not parts:
        raise ValueError("nothing to merge")
    ids = np.concatenate([p.ids for p in parts], axis=1)
    scores = np.concatenate([p.scores for p in parts], axis=1)
    return sort_rows(ids, scores, k)


def concat_queries(parts: list[Candidates]) -> Candidates:
    """Stack the outputs of query shards (in shard order) into one list per query."""
    k = max(p.k for p in parts)
    padded = []
    for p in parts:
        extra = k - p.k
        padded.append(Candidates(np.pad(p.ids, ((0, 0), (0, extra)), constant_values=NO_ID),
                                 np.pad(p.scores, ((0, 0), (0, extra)), constant_values=-np.inf)))
    return Candidates(np.concatenate([p.ids for p in padded]), np.concatenate([p.scores for p in padded]))


def shard_bounds(n: int, shard: int, num_shards: int) -> tuple[int, int]:
    """The [start, end) slice of n items that shard `shard` of `num_shards` owns (contiguous)."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} of {num_shards} is out of range")
    base, rest = divmod(n, num_shards)
    start = shard * base + min(shard, rest)
    return start, start + base + (1 if shard < rest else 0)
