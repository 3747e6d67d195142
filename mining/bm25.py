"""BM25 candidates: bm25s builds the index, retrieval runs as batched sparse matrix products.

bm25s precomputes every (token, document) BM25 weight into a sparse matrix. Scoring a batch of
queries is then one sparse product `Q @ W` (queries x vocabulary times vocabulary x documents), and
the top k of each row is taken from its non-zero entries only: a document sharing no term with the
query is never a candidate (no random padding). `rank_bm25` runs the reference implementation,
one query at a time, behind the same interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipe_embed.mining.candidates import NO_ID, Candidates
from pipe_embed.pipeline.core.console import progress_bar
from pipe_embed.pipeline.core.pairs import PairRow


@dataclass(frozen=True)
class TokenizerConfig:
    """How texts become BM25 terms (the same for documents and queries)."""

    lowercase: bool = True
    stopwords: str | None = "english"
    stemmer: str | None = "english"


def tokenize(texts: Sequence[str], config: TokenizerConfig = TokenizerConfig()) -> list[list[str]]:
    """Split texts into terms with bm25s' tokenizer: lowercase, stopwords and PyStemmer stemming."""
    import bm25s

    stemmer = None
    if config.stemmer:
        import Stemmer

        stemmer = Stemmer.Stemmer(config.stemmer)  # bm25s stems the unique tokens in one call
    tokens = bm25s.tokenize(list(texts), lower=config.lowercase, stopwords=config.stopwords or None,
                            stemmer=stemmer, return_ids=False, show_progress=False)
    return [[t for t in doc if t] for doc in tokens]


def _top_k_sparse_rows(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, k: int) -> Candidates:
    """Top k (score desc, index asc) of each CSR row's non-zero entries, padded with -1."""
    n = len(indptr) - 1
    out = Candidates.empty(n, k)
    for row in range(n):
        start, end = indptr[row], indptr[row + 1]
        if start == end:
            continue
        scores = data[start:end]
        docs = indices[start:end]
        if end - start > k:
            # keep everything tied with the k-th score, then order exactly
            threshold = np.partition(scores, end - start - k)[end - start - k]
            keep = scores >= threshold
            scores, docs = scores[keep], docs[keep]
        order = np.lexsort((docs, -scores))[:k]
        out.ids[row, : len(order)] = docs[order]
        out.scores[row, : len(order)] = scores[order]
    return out


class BM25Index:
    """bm25s index over the candidate corpus; batched sparse retrieval and pair scoring."""

    name = "bm25s"

    def __init__(self, corpus_tokens: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75,
                 method: str = "lucene") -> None:
        import bm25s
        import scipy.sparse as sp

        self.num_docs = len(corpus_tokens)
        retriever = bm25s.BM25(k1=k1, b=b, method=method)
        retriever.index([list(t) for t in corpus_tokens], show_progress=False)
        self.vocab: dict[str, int] = dict(retriever.vocab_dict)
        scores = retriever.scores
        num_terms = len(scores["indptr"]) - 1
        # bm25s keeps, per term, the documents containing it and their weights: a terms x docs CSR.
        self.weights = sp.csr_matrix((scores["data"], scores["indices"], scores["indptr"]),
                                     shape=(num_terms, self.num_docs))
        self._by_doc: Any = None  # docs x terms (a scipy CSR matrix), built on first use

    def query_matrix(self, query_tokens: Sequence[Sequence[str]]):
        """Queries as a sparse term-count matrix (a repeated term counts twice, as in BM25)."""
        import scipy.sparse as sp

        rows, cols = [], []
        for i, tokens in enumerate(query_tokens):
            for token in tokens:
                j = self.vocab.get(token)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(query_tokens), self.weights.shape[0]))

    def search(self, query_tokens: Sequence[Sequence[str]], k: int, batch_size: int = 2048,
               description: str = "bm25 search") -> Candidates:
        """Top-k documents with a non-zero score for every query, in batches of queries."""
        k = max(1, min(k, self.num_docs))
        parts = []
        with progress_bar(description, len(query_tokens)) as advance:
            for start in range(0, len(query_tokens), batch_size):
                q = self.query_matrix(query_tokens[start:start + batch_size])
                scores = (q @ self.weights).tocsr()
                scores.eliminate_zeros()
                parts.append(_top_k_sparse_rows(scores.indptr, scores.indices, scores.data, k))
                advance(q.shape[0])
        if not parts:
            return Candidates.empty(0, k)
        return Candidates(np.concatenate([p.ids for p in parts]), np.concatenate([p.scores for p in parts]))

    def score_pairs(self, query_tokens: Sequence[Sequence[str]], query_index: np.ndarray,
                    doc_index: np.ndarray) -> np.ndarray:
        """BM25 score of given (query, document) pairs without scoring the whole corpus."""
        if len(query_index) == 0:
            return np.zeros(0, dtype=np.float32)
        if self._by_doc is None:
            self._by_doc = self.weights.T.tocsr()  # docs x terms
        q = self.query_matrix(query_tokens)[query_index]
        d = self._by_doc[doc_index]
        return np.asarray(q.multiply(d).sum(axis=1), dtype=np.float32).ravel()


class RankBM25Index:
    """The rank-bm25 reference (BM25Okapi), scoring the whole corpus one query at a time."""

    name = "rank_bm25"

    def __init__(self, corpus_tokens: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75,
                 method: str = "lucene") -> None:
        from rank_bm25 import BM25Okapi

        self.num_docs = len(corpus_tokens)
        # rank-bm25 divides by zero on an empty document; a placeholder term matches no query.
        docs = [list(t) if t else ["\x00"] for t in corpus_tokens]
        self.engine = BM25Okapi(docs, k1=k1, b=b)

    def full_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """Scores of one query against every document."""
        if not tokens:
            return np.zeros(self.num_docs, dtype=np.float32)
        return np.asarray(self.engine.get_scores(list(tokens)), dtype=np.float32)

    def search(self, query_tokens: Sequence[Sequence[str]], k: int, batch_size: int = 2048,
               description: str = "rank_bm25 search") -> Candidates:
        """Top-k documents with a positive score per query (slow: the reference)."""
        k = max(1, min(k, self.num_docs))
        out = Candidates.empty(len(query_tokens), k)
        with progress_bar(description, len(query_tokens)) as advance:
            for row, tokens in enumerate(query_tokens):
                scores = self.full_scores(tokens)
                nz = np.flatnonzero(scores > 0)
                order = nz[np.lexsort((nz, -scores[nz]))][:k]
                out.ids[row, : len(order)] = order
                out.scores[row, : len(order)] = scores[order]
                advance(1)
        return out

    def score_pairs(self, query_tokens: Sequence[Sequence[str]], query_index: np.ndarray,
                    doc_index: np.ndarray) -> np.ndarray:
        """BM25Okapi score of given (query, document) pairs."""
        out = np.zeros(len(query_index), dtype=np.float32)
        for i, (q, d) in enumerate(zip(query_index, doc_index)):
            tokens = list(query_tokens[int(q)])
            out[i] = self.engine.get_batch_scores(tokens, [int(d)])[0] if tokens else 0.0
        return out


def make_index(corpus_tokens: Sequence[Sequence[str]], backend: str = "bm25s", **params) -> BM25Index | RankBM25Index:
    """The BM25 engine named by `backend` (bm25s or rank_bm25)."""
    if backend == "bm25s":
        return BM25Index(corpus_tokens, **params)
    if backend == "rank_bm25":
        return RankBM25Index(corpus_tokens, **params)
    raise ValueError(f"unknown BM25 backend {backend!r}")


def tie_aware_overlap(ids_a: np.ndarray, ref_scores: np.ndarray, k: int) -> float:
    """Share of a's top k that the reference ranks within its top k, ties at its k-th score counted."""
    ids_a = ids_a[ids_a != NO_ID][:k]
    if len(ids_a) == 0:
        return 1.0
    positive = ref_scores[ref_scores > 0]
    if len(positive) == 0:
        return 0.0
    kth = np.sort(positive)[::-1][min(k, len(positive)) - 1]
    return float(np.mean(ref_scores[ids_a] >= kth - 1e-5 * max(1.0, abs(float(kth)))))


def bm25_negatives_for_pairs(rows: Sequence[PairRow], corpus: Sequence[dict[str, Any]] | Sequence[str] | None = None,
                             k: int = 3, *, range_min: int = 0, range_max: int | None = None,
                             tokenizer: TokenizerConfig = TokenizerConfig(), backend: str = "bm25s",
                             definitions_from: Sequence[PairRow] | None = None) -> list[PairRow]:
    """Copies of pairs rows with up to k BM25 hard negatives each (`pipe compose --hard-k K`).

    Candidates are `corpus` ({"id", "text"} rows or plain texts), by default every positive of
    `rows`. A row's positives, texts normalising like a positive or the anchor, and other
    definitions of the same term (over `definitions_from`, default `rows`) are never negatives;
    only documents sharing a term with the anchor are candidates. Fills `hard_negatives`,
    `negative_ids`, `negative_scores` and `positive_score`; a row may get fewer than k.
    """
    from pipe_embed.mining.corpus import (
        as_index_array,
        build_corpus,
        build_exclusions,
        positive_indices,
        reduce_min,
        term_definitions,
    )
    from pipe_embed.mining.selection import SelectionParams, select_negatives
    from pipe_embed.pipeline.core.pairs import doc_id

    rows = list(rows)
    if not rows or k <= 0:
        return [r.copy() for r in rows]
    if corpus is None:
        corpus_rows = [{"id": pid, "text": text} for r in rows
                       for pid, text in zip(r.get("positive_ids") or [doc_id(p) for p in r["positives"]], r["positives"])]
    else:
        corpus_rows = [{"id": doc_id(c), "text": c} if isinstance(c, str) else c for c in corpus]
    cand = build_corpus(corpus_rows)
    positives = positive_indices(rows, cand)
    exclusions = build_exclusions(rows, cand, positives, term_definitions(definitions_from or rows))
    range_max = range_max if range_max is not None else range_min + k
    params = SelectionParams(num_negatives=k, range_min=range_min, range_max=max(range_max, range_min + k))
    depth = min(len(cand), params.range_max + exclusions.max_count())
    query_tokens = tokenize([r["anchor"] for r in rows], tokenizer)
    index = make_index(tokenize(cand.texts, tokenizer), backend)
    cands = index.search(query_tokens, depth, description="bm25 hard negatives")
    prow, pidx = as_index_array(positives)
    pos_scores = reduce_min(index.score_pairs(query_tokens, prow, pidx), prow, len(rows))
    selection = select_negatives(cands, exclusions, pos_scores, params)
    out = []
    for row, (ids, scores), pos in zip(rows, selection.rows(cands), pos_scores):
        new = row.copy()
        new["hard_negatives"] = [cand.texts[i] for i in ids]
        new["negative_ids"] = [cand.ids[i] for i in ids]
        new["negative_scores"] = [round(float(s), 6) for s in scores]
        new["positive_score"] = round(float(pos), 6)
        out.append(new)
    return out
