"""Exact search (mining.search): faiss's own neighbours, ties and padding, whatever the threads and shards."""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
import pytest

from pipe_embed.mining import executors, search
from pipe_embed.mining.candidates import Candidates, concat_queries, merge_topk, sort_rows
from pipe_embed.mining.dense import knn_search
from pipe_embed.pipeline.core import console


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """n random unit vectors."""
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def tied(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Small-integer vectors, half of them copies of five: every dot product is exact, so ties are real ties."""
    x = rng.integers(0, 3, size=(n, dim)).astype(np.float32)
    x[rng.integers(0, n, n // 2)] = x[rng.integers(0, 5, n // 2)]
    return x


def flat_ip(queries: np.ndarray, corpus: np.ndarray, k: int) -> Candidates:
    """faiss.IndexFlatIP's answer, rows ordered as pipe orders them (score, then corpus index)."""
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus)
    scores, ids = index.search(queries, k)
    return sort_rows(ids, scores)


@pytest.fixture()
def faiss_threads() -> Iterator[None]:
    """Give back faiss's OpenMP thread count (and the console's verbosity) as the test found them."""
    threads, verbosity = faiss.omp_get_max_threads(), console._verbosity
    yield
    faiss.omp_set_num_threads(threads)
    console.set_verbosity(verbosity)


# dim 384 with >= 334 queries per call takes faiss's BLAS path; dim 32 its per-pair one
@pytest.mark.parametrize(("n_queries", "dim"), [(1500, 384), (200, 32)])
def test_random_vectors_give_faiss_flat_neighbours(n_queries, dim):
    rng = np.random.default_rng(0)
    queries, corpus = unit(rng, n_queries, dim), unit(rng, 3000, dim)
    want = flat_ip(queries, corpus, 30)
    got = search.exact_search(queries, corpus, 30, batch_size=1024)
    assert (got.ids == want.ids).all()
    assert np.allclose(got.scores, want.scores, atol=1e-5, rtol=0)
    assert (knn_search(queries, corpus, 30, batch_size=1024).ids == want.ids).all()  # dense mining's path


@pytest.mark.parametrize("k", [20, 120])  # faiss's heap below distance_compute_min_k_reservoir, its reservoir from it
@pytest.mark.parametrize(("n_queries", "dim"), [(700, 384), (60, 32)])
def test_exact_ties_keep_the_ids_faiss_keeps(k, n_queries, dim):
    rng = np.random.default_rng(1)
    queries, corpus = tied(rng, n_queries, dim), tied(rng, 3000, dim)
    want = flat_ip(queries, corpus, k)
    got = search.exact_search(queries, corpus, k)
    kth = want.scores[:, -1:]
    assert ((want.scores[:, :-1] == kth).any(axis=1)).mean() > 0.5  # most rows tie at the k-th place
    assert (got.ids == want.ids).all() and (got.scores == want.scores).all()


def test_a_tie_is_not_simply_won_by_the_lower_id():
    corpus = np.array([[1, 0], [1, 0], [1, 0], [2, 0]], dtype=np.float32)
    queries = np.array([[1, 0]], dtype=np.float32)
    faiss_scores, faiss_ids = faiss.knn(queries, corpus, 2, metric=faiss.METRIC_INNER_PRODUCT)
    scores, ids = search.flat_knn(queries, corpus, 2)
    assert (ids == faiss_ids).all() and (scores == faiss_scores).all()
    assert search.exact_search(queries, corpus, 2).ids.tolist() == sort_rows(faiss_ids, faiss_scores).ids.tolist()


def test_k_above_the_corpus_size_returns_the_whole_corpus():
    rng = np.random.default_rng(2)
    queries, corpus = unit(rng, 40, 16), unit(rng, 7, 16)
    want = flat_ip(queries, corpus, 50)
    got = search.exact_search(queries, corpus, 50)
    assert got.k == 7 and (want.ids[:, 7:] == -1).all()
    assert (got.ids == want.ids[:, :7]).all() and np.allclose(got.scores, want.scores[:, :7], atol=1e-5)
    scores, ids = search.flat_knn(queries, corpus, 50)  # the faiss.knn drop-in pads as faiss does
    faiss_scores, faiss_ids = faiss.knn(queries, corpus, 50, metric=faiss.METRIC_INNER_PRODUCT)
    assert (ids == faiss_ids).all() and (scores[:, 7:] == faiss_scores[:, 7:]).all()


def test_an_empty_corpus_gives_empty_slots():
    rng = np.random.default_rng(3)
    assert (search.exact_search(unit(rng, 4, 8), unit(rng, 0, 8), 3).ids == -1).all()


def test_corpus_shards_with_id_offsets_merge_to_the_whole_search():
    rng = np.random.default_rng(4)
    queries, corpus = unit(rng, 600, 384), unit(rng, 5000, 384)
    whole = search.exact_search(queries, corpus, 25)
    parts = []
    for start, end in executors.aligned_bounds(len(corpus), 3, executors.corpus_align()):
        part = search.exact_search(queries, corpus[start:end], 25, id_offset=start)
        want = flat_ip(queries, corpus[start:end], 25)
        assert (part.ids == want.ids + start).all() and np.allclose(part.scores, want.scores, atol=1e-5)
        parts.append(part)
    merged = merge_topk(parts, 25)
    assert (merged.ids == whole.ids).all() and (merged.scores == whole.scores).all()  # the same blocks: same bits


def test_one_call_is_faiss_knn_on_one_thread_bit_for_bit(faiss_threads):
    rng = np.random.default_rng(5)
    queries, corpus = unit(rng, 400, 384), unit(rng, 2500, 384)
    assert search.query_tiles(len(queries), len(queries), 384) == [(0, 400)]  # one call, on faiss's BLAS path
    faiss.omp_set_num_threads(1)
    want_scores, want_ids = faiss.knn(queries, corpus, 30, metric=faiss.METRIC_INNER_PRODUCT)
    scores, ids = search.flat_knn(queries, corpus, 30, threads=2)
    assert (ids == want_ids).all() and (scores == want_scores).all()


def test_thread_count_changes_no_bit():
    rng = np.random.default_rng(6)
    queries, corpus = unit(rng, 2600, 384), unit(rng, 3000, 384)
    one = search.exact_search(queries, corpus, 30, batch_size=1500, threads=1)
    for threads in (2, 3):
        many = search.exact_search(queries, corpus, 30, batch_size=1500, threads=threads)
        assert (many.ids == one.ids).all() and (many.scores == one.scores).all()


def test_ray_search_tasks_on_one_cpu_equal_the_in_process_search_bit_for_bit(faiss_threads):
    """The Ray grid (whole search chunks x aligned corpus shards, one CPU per task), without Ray, on BLAS-sized calls."""
    rng = np.random.default_rng(7)
    queries, corpus = unit(rng, 1400, 384), unit(rng, 5000, 384)
    corpus[17] = corpus[4500] = queries[0]  # a tie across corpus shards (at the top: not at the k-th place)
    k, batch = 40, 400
    faiss.omp_set_num_threads(2)
    want = knn_search(queries, corpus, k, batch_size=batch)
    merged = []
    for a, b in executors.aligned_bounds(len(queries), 2, batch):
        found = None
        for c, d in executors.aligned_bounds(len(corpus), 2, executors.corpus_align()):
            ids, scores, _ = executors.search_task(queries[a:b], corpus[c:d], None, k, c, {"kind": "flat", "gpu": False},
                                                   batch, 1, 0, None)
            part = Candidates(ids, scores)
            found = part if found is None else merge_topk([found, part], k)
        merged.append(found)
    got = concat_queries(merged)
    assert want.ids[0, :2].tolist() == [17, 4500]
    assert (got.ids == want.ids).all() and (got.scores == want.scores).all()


def test_tiles_cover_every_chunk_without_crossing_its_edges():
    for n, batch, dim in [(20000, 4096, 384), (1000, 4096, 384), (10, 4, 32), (0, 8, 8), (5000, 128, 48)]:
        tiles = search.query_tiles(n, batch, dim)
        assert [a for a, _ in tiles] == [0, *(b for _, b in tiles[:-1])][:len(tiles)]  # contiguous from 0
        assert (tiles[-1][1] if tiles else 0) == n
        assert all(a // batch == (b - 1) // batch for a, b in tiles)
        assert all(b - a <= search.QUERY_TILE for a, b in tiles)
    assert {b - a for a, b in search.query_tiles(4096, 4096, 384)} == {512}  # 8 calls on faiss's BLAS path
