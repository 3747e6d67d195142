"""Exact inner-product top-k on CPU: `faiss.knn` on query tiles, one OpenMP thread per call, a thread pool across.

`faiss.knn` on a whole search chunk runs one BLAS product per 1024 corpus rows and spreads each over every
OpenMP thread, which meet at a barrier after every product; with other processes on the cores, threads wait
for each other there, and the scores depend on the thread count. Here each call gets one thread (OpenMP
settings are per thread, so the pool's threads set their own) and a tile of a chunk's rows (query_tiles); as
many calls run at once as faiss may use threads. Selection is faiss's own (its heap, or its reservoir from
k = `distance_compute_min_k_reservoir` on), so equal scores keep the ids faiss keeps.

A tile's scores depend only on its rows and the corpus blocks (faiss's `distance_compute_blas_database_bs`
rows each), never on the thread count: queries cut at whole search chunks and a corpus cut at multiples of
that block (the Ray executor's shards) give the same bits. Memory: the corpus, the results, and faiss's
block of scores per running call.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

from pipe_embed.mining.candidates import Candidates, shard_bounds, sort_rows
from pipe_embed.pipeline.core.console import progress_bar

QUERY_TILE = 1024  # most query rows per faiss call
TILES_PER_CHUNK = 8  # calls per search chunk when it is big enough: work for every thread


def search_threads() -> int:
    """Calls at once: faiss's OpenMP thread count (the Ray executor sets it per task)."""
    import faiss

    return max(1, int(faiss.omp_get_max_threads()))


def tiles_in_chunk(rows: int, dim: int) -> int:
    """Calls for a chunk of `rows` queries: about TILES_PER_CHUNK, none above QUERY_TILE rows, whatever the threads."""
    import faiss

    # fewer rows than this per call take faiss's per-pair loop instead of BLAS: tiles stay above it when they can
    blas_rows = -(-int(faiss.cvar.distance_compute_blas_threshold) // max(1, dim))
    return max(-(-rows // QUERY_TILE), min(TILES_PER_CHUNK, max(1, rows // max(1, blas_rows))))


def query_tiles(n: int, batch_size: int, dim: int) -> list[tuple[int, int]]:
    """[start, end) tiles, near-equal, of every search chunk of batch_size rows (none crosses a chunk's edge)."""
    step = max(1, batch_size)
    tiles = []
    for chunk in range(0, n, step):
        rows = min(step, n - chunk)
        parts = tiles_in_chunk(rows, dim)
        tiles += [(chunk + a, chunk + b) for a, b in (shard_bounds(rows, i, parts) for i in range(parts))]
    return tiles


def _one_openmp_thread() -> None:
    """Pool threads run faiss (and its BLAS) on their own thread only: no barrier shared between calls."""
    import faiss

    faiss.omp_set_num_threads(1)


def tiled_knn(queries: np.ndarray, corpus: np.ndarray, k: int, tiles: list[tuple[int, int]], threads: int,
              advance: Callable[[int], None]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of `faiss.knn` inner product, one single-threaded call per tile, `threads` calls at once."""
    import faiss

    scores = np.empty((len(queries), k), dtype=np.float32)
    ids = np.empty((len(queries), k), dtype=np.int64)

    def run(start: int, end: int) -> int:
        scores[start:end], ids[start:end] = faiss.knn(queries[start:end], corpus, k,
                                                      metric=faiss.METRIC_INNER_PRODUCT)
        return end - start

    pool = ThreadPoolExecutor(max(1, min(threads, len(tiles))), initializer=_one_openmp_thread)
    try:
        for job in as_completed([pool.submit(run, a, b) for a, b in tiles]):
            advance(job.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error or Ctrl-C, tiles not started never start
    return scores, ids


def exact_search(queries: np.ndarray, corpus: np.ndarray, k: int, *, batch_size: int = 4096, id_offset: int = 0,
                 threads: int | None = None, description: str = "exact search") -> Candidates:
    """Exact inner-product top-k of every query (k capped at the corpus size), ids offset; rows by score, then id."""
    n = len(queries)
    k = max(1, min(k, len(corpus)))
    if n == 0 or len(corpus) == 0:
        return Candidates.empty(n, k)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    corpus = np.ascontiguousarray(corpus, dtype=np.float32)
    with progress_bar(description, n) as advance:
        tiles = query_tiles(n, batch_size, corpus.shape[1])
        scores, ids = tiled_knn(queries, corpus, k, tiles, threads or search_threads(), advance)
    return sort_rows(np.where(ids >= 0, ids + id_offset, -1), scores)


def flat_knn(queries: np.ndarray, corpus: np.ndarray, k: int, *,
             threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drop-in for `faiss.knn(queries, corpus, k, METRIC_INNER_PRODUCT)`: (scores, ids), faiss's order and padding."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    corpus = np.ascontiguousarray(corpus, dtype=np.float32)
    tiles = query_tiles(len(queries), max(1, len(queries)), corpus.shape[1])
    return tiled_knn(queries, corpus, k, tiles, threads or search_threads(), lambda _rows: None)
