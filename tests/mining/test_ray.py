"""The Ray executor on a real local Ray instance: the in-process negatives, bit for bit, and a killed worker retried."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from pipe_embed.mining import executors
from pipe_embed.mining.dense import IndexParams, dense_search
from pipe_embed.mining.methods.faiss import FaissParams, executor_view
from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.pairs import read_pairs
from pipe_embed.pipeline.core.store import Store
from tests.mining.conftest import make_compose

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'pipe-embed[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for the whole module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()


def crash_once(folder: Path, victims: set[tuple[str, int]]):
    """A task hook that kills its worker process (os._exit) on the first attempt of each victim task."""
    where = str(folder)

    def hook(kind: str, shard: int) -> None:
        import os
        from pathlib import Path as P

        marker = P(where) / f"{kind}-{shard}"
        if (kind, shard) in victims and not marker.exists():
            marker.touch()
            os._exit(1)

    return hook


def config(model: Path, **kw) -> MineConfig:
    # search_batch_size 4: several anchor shards; torch backend: the same vectors in every process
    # relative_margin 0: the tiny random model scores everything alike, keep some negatives to compare
    return MineConfig(method="faiss", model=str(model), backend="torch", num_negatives=3, range_max=10,
                      relative_margin=0.0, search_batch_size=4, **kw)


@pytest.mark.slow
def test_ray_gives_the_in_process_negatives_and_survives_killed_workers(local_ray, tiny_model_path, tmp_path,
                                                                          monkeypatch):
    local = Store(tmp_path / "local")
    expected = run_mine(local, config(tiny_model_path), make_compose(local)).artifact

    distributed = Store(tmp_path / "ray")
    compose = make_compose(distributed)
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setattr(executors, "CORPUS_ALIGN", 4)  # shard the 20-text corpus too, not only the anchors
    monkeypatch.setattr(executors, "TASK_HOOK", crash_once(markers, {("encode", 1), ("encoded", 0), ("search", 1)}))
    got = run_mine(distributed, config(tiny_model_path, executor="ray", num_workers=2), compose).artifact

    assert sorted(p.name for p in markers.iterdir()) == ["encode-1", "encoded-0", "search-1"]  # they died
    assert got.version == expected.version  # the executor is operational: same version, same result
    mine, theirs = read_pairs(got.file("pairs.jsonl")), read_pairs(expected.file("pairs.jsonl"))
    assert [r["id"] for r in mine] == [r["id"] for r in theirs]
    assert [r["hard_negatives"] for r in mine] == [r["hard_negatives"] for r in theirs]
    assert [r["negative_ids"] for r in mine] == [r["negative_ids"] for r in theirs]
    assert sum(len(r["hard_negatives"]) for r in mine) > len(mine)  # not trivially empty
    for a, b in zip(mine, theirs):
        assert np.allclose(a["negative_scores"], b["negative_scores"], atol=1e-5)
    assert got.stats["encoded_texts"] == expected.stats["encoded_texts"] > 0  # the workers encoded, once each

    # The same cached vectors: in-process and Ray write byte-identical pairs.
    ray_bytes = got.file("pairs.jsonl").read_bytes()
    monkeypatch.setattr(executors, "TASK_HOOK", None)
    again = run_mine(distributed, config(tiny_model_path), compose, force=True).artifact
    assert again.stats["encoded_texts"] == 0
    assert again.file("pairs.jsonl").read_bytes() == ray_bytes


@pytest.mark.slow  # local_ray: starting Ray costs 3-11 s on 2 cores
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_sharded_search_equals_faiss_in_process_bit_for_bit(local_ray, kind):
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(5000, 48)).astype(np.float32)
    queries = rng.normal(size=(300, 48)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    corpus[17] = corpus[4000]  # a tie across corpus shards: the lower id must win, as in-process
    cfg = executor_view(MineConfig(search_batch_size=128, params={"faiss": FaissParams(index=kind, nprobe=8)}))
    plan = executors.Plan(workers=2, cpus=1, gpu=False, where="test")
    got = executors.search_on_ray(local_ray, plan, cfg, queries, corpus, 40)
    want = dense_search(queries, corpus, 40, IndexParams(kind=kind, nprobe=8), batch_size=128)
    assert got.ids.shape == want.ids.shape == (300, 40)
    assert (got.ids == want.ids).all()
    assert (got.scores == want.scores).all()  # the same BLAS blocks: equal to the last bit


def test_shard_edges_follow_faiss_blocks():
    assert executors.aligned_bounds(5000, 2, 1024) == [(0, 3072), (3072, 5000)]
    assert executors.aligned_bounds(10, 4, 4) == [(0, 4), (4, 8), (8, 10)]  # never an empty shard
    assert executors.aligned_bounds(0, 3, 8) == []


@pytest.mark.slow  # local_ray: starting Ray costs 3-11 s on 2 cores
def test_bad_settings_fail_in_one_line_before_any_work(local_ray, tiny_model_path, store):
    compose = make_compose(store)
    with pytest.raises(ConfigError, match="worker_gpu.*no GPU"):
        run_mine(store, config(tiny_model_path, executor="ray", worker_gpu="on"), compose)
    with pytest.raises(ConfigError, match="num_workers"):
        run_mine(store, config(tiny_model_path, executor="ray", num_workers=-1), compose)
    assert store.versions("mine") == []


def test_missing_ray_names_the_extra(monkeypatch, tiny_model_path, store):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    compose = make_compose(store)
    with pytest.raises(PipeError) as info:
        run_mine(store, config(tiny_model_path, executor="ray"), compose)
    assert "pipe-embed[ray]" in str(info.value) and "\n" not in str(info.value)
    assert store.versions("mine") == []
