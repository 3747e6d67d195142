"""`--method hybrid`: the BM25 and dense lists fused by reciprocal rank fusion, scored by cosine."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from pipe_embed.mining.candidates import Candidates
from pipe_embed.mining.groups import Scorer, bm25_scorer, dense_scorer, hybrid_scorer
from pipe_embed.mining.methods.base import DENSE_RELATIVE_MARGIN, Context, Method, Retrieved
from pipe_embed.mining.methods.bm25 import lexical
from pipe_embed.mining.methods.faiss import cosine_pairs, dense
from pipe_embed.pipeline.core.config import option
from pipe_embed.pipeline.core.errors import ConfigError


@dataclass
class HybridParams:
    """Settings of the fusion itself (BM25 and dense search keep their own sections)."""

    rrf_k: int = option(60, "Reciprocal rank fusion constant: higher flattens the weight of the top ranks.")

    def validate(self) -> None:
        """Check ranges; raises ConfigError naming the field."""
        if self.rrf_k < 1:
            raise ConfigError("field 'rrf_k': must be at least 1")


@dataclass(frozen=True)
class HybridMethod(Method):
    """BM25 + dense, fused by rank; the order is the fused one, the scores are dense cosines."""

    def retrieve(self, ctx: Context) -> Retrieved:
        from pipe_embed.mining.dense import candidate_scores
        from pipe_embed.mining.hybrid import rrf_fuse

        words = lexical(ctx)
        found = dense(ctx)
        fused = rrf_fuse([words.cands, found.cands], ctx.k, ctx.params(HybridParams).rrf_k)
        cands = Candidates(fused.ids, candidate_scores(*found.vectors(), fused.ids))
        return dataclasses.replace(found, cands=cands, bm25=words.bm25, query_tokens=words.query_tokens)

    def pair_scores(self, found: Retrieved, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return cosine_pairs(found, rows, ids)

    def scorer(self, ctx: Context, found: Retrieved) -> Scorer:
        return hybrid_scorer(bm25_scorer(found.bm25, found.query_tokens or []),
                             dense_scorer(*found.vectors()),
                             ctx.params(HybridParams).rrf_k)


METHOD = HybridMethod("hybrid", "BM25 and dense lists fused by reciprocal rank (also reads the bm25 and faiss "
                      "settings)", HybridParams, dense=True, uses=("bm25", "faiss", "hybrid"),
                      relative_margin=DENSE_RELATIVE_MARGIN)
