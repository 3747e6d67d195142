"""`--method faiss`: dense candidates, the texts nearest each anchor by cosine of the model's embeddings.

Encoding goes through the embedding cache; search is exact (flat) or by a FAISS ivf/hnsw index, in
process or as Ray tasks (`--executor ray`), which give the same vectors and candidates.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np

from pipe_embed.mining.dense import IndexParams, dense_search, pair_scores
from pipe_embed.mining.groups import Scorer, dense_scorer
from pipe_embed.mining.methods.base import DENSE_RELATIVE_MARGIN, Context, Method, Retrieved
from pipe_embed.pipeline.core.config import option, params_of
from pipe_embed.pipeline.core.errors import ConfigError


@dataclass
class FaissParams:
    """Settings only dense search reads: the FAISS index and its search knobs."""

    index: Literal["flat", "ivf", "hnsw"] = option("flat", "FAISS index: exact inner product, or ivf/hnsw for large corpora.")
    nprobe: int = option(32, "ivf: cells searched per query.")
    ef_search: int = option(128, "hnsw: search breadth.")

    def validate(self) -> None:
        """Check ranges; raises ConfigError naming the field."""
        for name in ("nprobe", "ef_search"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}': must be at least 1")


def index_params(config: Any) -> IndexParams:
    """The FAISS index of a mine config's [mine.faiss] settings."""
    params = params_of(config, FaissParams)
    return IndexParams(kind=params.index, nprobe=params.nprobe, ef_search=params.ef_search)


def executor_view(config: Any) -> SimpleNamespace:
    """The config as the Ray executor reads it: its own fields plus the [mine.faiss] settings as attributes
    (`view.index`, `view.nprobe`), so the executor needs no knowledge of sections."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return SimpleNamespace(**fields, **dataclasses.asdict(params_of(config, FaissParams)))


def dense(ctx: Context) -> Retrieved:
    """Anchor and text vectors (from the cache where it has them) and each anchor's top-k texts by cosine."""
    config, seconds = ctx.config, ctx.seconds
    start = time.perf_counter()
    if config.executor == "ray":  # encoding and search as Ray tasks: the same vectors and candidates
        from pipe_embed.mining.executors import ray_dense

        queries, corpus, cands = ray_dense(executor_view(config), ctx.encoder, ctx.anchors, ctx.corpus.texts, ctx.k,
                                           seconds)
    else:
        queries = ctx.encoder.encode(ctx.anchors, config.query_prompt, "encode anchors")
        corpus = ctx.encoder.encode(ctx.corpus.texts, config.passage_prompt, "encode corpus")
        seconds["encode"] = time.perf_counter() - start
        start = time.perf_counter()
        cands = dense_search(queries, corpus, ctx.k, index_params(config), batch_size=config.search_batch_size)
        seconds["search"] = time.perf_counter() - start
    return Retrieved(cands, query_vectors=queries, corpus_vectors=corpus, seconds=seconds)


def cosine_pairs(found: Retrieved, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Cosine of (anchor row, corpus index) pairs from the retrieved vectors."""
    return pair_scores(*found.vectors(), rows, ids)


@dataclass(frozen=True)
class FaissMethod(Method):
    """Dense retrieval; scores are cosines."""

    def retrieve(self, ctx: Context) -> Retrieved:
        return dense(ctx)

    def pair_scores(self, found: Retrieved, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return cosine_pairs(found, rows, ids)

    def scorer(self, ctx: Context, found: Retrieved) -> Scorer:
        return dense_scorer(*found.vectors())


METHOD = FaissMethod("faiss", "dense candidates by cosine of the model's embeddings (exact, or a FAISS index)",
                     FaissParams, dense=True, uses=("faiss",), relative_margin=DENSE_RELATIVE_MARGIN)
