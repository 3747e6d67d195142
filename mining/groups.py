"""Same-group candidates: negatives drawn only from texts that share the anchor's group.

LexDPR takes "other articles of the same law" as negatives; here any column compose carried (the
`group` dict of pairs and corpus rows: the crawler's section and page, or a corpus file's column),
or a plain text field such as `source`, defines the groups. A text's group is its corpus row's, else
that of the row whose positive it is; an anchor's is its row's, else its first positive's. Every text
of the group is scored by the mining method's scorer (`Method.scorer`: BM25, dense cosine, both
fused by rank for hybrid; the scorers below) and the best k form the anchor's candidate list, so exclusions, the rank window and the margin filters
apply unchanged. Work is done group by group in blocks of bounded size, never anchors x corpus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipe_embed.mining.candidates import NO_ID, Candidates
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.pairs import PairRow

NO_GROUP = -1
BLOCK = 1 << 22  # (anchor, text) scores held at once
Scorer = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]  # -> (ranking key, scores)


def group_of(row: Mapping[str, Any], column: str) -> str:
    """The row's value of a carried column (`group[column]`, else a top-level text field), or ""."""
    group = row.get("group")
    value = group.get(column) if isinstance(group, dict) else None
    if value in (None, ""):
        value = row.get(column)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value).strip()


@dataclass
class Groups:
    """A group code per corpus text and per anchor (NO_GROUP when it has none)."""

    column: str
    names: list[str]
    doc_codes: np.ndarray
    anchor_codes: np.ndarray

    def stats(self) -> dict[str, Any]:
        """How many groups, and how many anchors had none (they get no same-group negatives)."""
        return {"column": self.column, "groups": len(self.names),
                "anchors_without_group": int((self.anchor_codes == NO_GROUP).sum()),
                "texts_without_group": int((self.doc_codes == NO_GROUP).sum())}


def build_groups(column: str, corpus_rows: Sequence[dict[str, Any]], corpus: Any,
                 rows: Sequence[PairRow], positives: Sequence[Sequence[int]],
                 where: str = "the input") -> Groups:
    """Group codes of the candidate corpus (`CandidateCorpus`) and of the anchors, by `column`."""
    codes: dict[str, int] = {}

    def code(value: str) -> int:
        return codes.setdefault(value, len(codes)) if value else NO_GROUP

    doc_codes = np.full(len(corpus), NO_GROUP, dtype=np.int64)
    for crow in corpus_rows:
        index = corpus.position.get(crow.get("id"))
        if index is not None:
            doc_codes[index] = code(group_of(crow, column))
    anchor_codes = np.full(len(rows), NO_GROUP, dtype=np.int64)
    for q, (row, pos) in enumerate(zip(rows, positives)):
        own = code(group_of(row, column))
        for p in pos:  # a positive without a group of its own takes its row's
            if doc_codes[p] == NO_GROUP:
                doc_codes[p] = own
        anchor_codes[q] = own if own != NO_GROUP else next((int(doc_codes[p]) for p in pos
                                                            if doc_codes[p] != NO_GROUP), NO_GROUP)
    if not codes:
        carried = sorted({k for r in rows[:1000] for k in (r.get("group") or {})})
        raise PipeError(f"{where}: no anchor or text has a value in column '{column}' (--same-group)",
                        hint=f"columns carried by compose: {', '.join(carried) or 'none'}; "
                             "compose with --group-cols COLUMN to carry another")
    return Groups(column, list(codes), doc_codes, anchor_codes)


def same_group_candidates(groups: Groups, k: int, scorer: Scorer, block: int = BLOCK) -> Candidates:
    """The best k texts of each anchor's group (ties by corpus index); anchors without a group get none."""
    n = len(groups.anchor_codes)
    out = Candidates.empty(n, max(k, 1))
    doc_order = np.argsort(groups.doc_codes, kind="stable")
    doc_sorted = groups.doc_codes[doc_order]
    anchor_order = np.argsort(groups.anchor_codes, kind="stable")
    anchor_sorted = groups.anchor_codes[anchor_order]
    for value in np.unique(anchor_sorted[anchor_sorted != NO_GROUP]):
        lo, hi = np.searchsorted(doc_sorted, [value, value + 1])
        docs = doc_order[lo:hi]  # ascending corpus index (stable sort)
        if len(docs) == 0:
            continue
        a_lo, a_hi = np.searchsorted(anchor_sorted, [value, value + 1])
        anchors = anchor_order[a_lo:a_hi]
        width = min(k, len(docs))
        step = max(1, block // len(docs))
        for start in range(0, len(anchors), step):
            part = anchors[start:start + step]
            key, scores = scorer(part, docs)
            order = top_columns(key, width)
            out.ids[part, :width] = docs[order]
            out.scores[part, :width] = np.take_along_axis(scores, order, axis=1)
    out.scores[out.ids == NO_ID] = -np.inf
    return out


def top_columns(key: np.ndarray, width: int) -> np.ndarray:
    """Column indices of each row's `width` largest keys, best first, ties by column (= corpus) order.

    A partition finds each row's width-th key; the columns above it and the first columns equal to it
    are the selection, so only `width` columns per row are sorted.
    """
    m, d = key.shape
    if d <= 2 * width:
        return np.argsort(-key, axis=1, kind="stable")[:, :width]
    kth = -np.partition(-key, width - 1, axis=1)[:, width - 1]
    above = key > kth[:, None]
    tied = key == kth[:, None]
    need = width - above.sum(axis=1)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need[:, None]))
    cols = np.nonzero(chosen)[1].reshape(m, width)  # ascending column order per row
    picked = np.take_along_axis(key, cols, axis=1)
    return np.take_along_axis(cols, np.argsort(-picked, axis=1, kind="stable"), axis=1)


def _per_group(gather: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """`gather(docs)` computed once per group (the blocks of one group share their `docs` array)."""
    last: list[Any] = [None, None]

    def cached(docs: np.ndarray) -> Any:
        if last[0] is not docs:
            last[0], last[1] = docs, gather(docs)
        return last[1]

    return cached


def dense_scorer(query_vectors: np.ndarray, corpus_vectors: np.ndarray) -> Scorer:
    """Cosine (normalised vectors' inner product) of anchors x the group's texts."""
    texts = _per_group(lambda docs: np.ascontiguousarray(corpus_vectors[docs].T))

    def score(anchors: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = query_vectors[anchors] @ texts(docs)
        return sims, sims

    return score


def bm25_scorer(index: Any, query_tokens: Sequence[Sequence[str]]) -> Scorer:
    """BM25 of anchors x the group's texts (a text sharing no term scores 0 and still counts)."""
    if hasattr(index, "query_matrix") and hasattr(index, "weights"):
        queries = index.query_matrix(query_tokens).tocsr()
        by_doc = index.weights.T.tocsr()  # texts x terms
        texts = _per_group(lambda docs: by_doc[docs].T.tocsc())

        def score(anchors: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sims = np.asarray((queries[anchors] @ texts(docs)).toarray(), dtype=np.float32)
            return sims, sims
    else:  # the rank_bm25 reference: pair by pair
        def score(anchors: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sims = index.score_pairs(query_tokens, np.repeat(anchors, len(docs)), np.tile(docs, len(anchors)))
            sims = sims.reshape(len(anchors), len(docs))
            return sims, sims

    return score


def _ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of each column within its row, best first, ties by column."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return ranks


def hybrid_scorer(bm25: Scorer, dense: Scorer, rrf_k: int = 60) -> Scorer:
    """Reciprocal rank fusion of the BM25 and dense ranks within the group; scores are the cosines."""
    def score(anchors: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lexical, _ = bm25(anchors, docs)
        _, sims = dense(anchors, docs)
        fused = 1.0 / (rrf_k + _ranks(lexical) + 1.0) + 1.0 / (rrf_k + _ranks(sims) + 1.0)
        return fused, sims

    return score

