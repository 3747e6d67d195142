"""The Ray executor of dense mining (`pipe mine --executor ray`): encoding and exact search as Ray tasks.

Encoding: the texts the embedding cache lacks are split by key (the `--shard` owner rule) into one
task per worker; each task encodes its share and writes it into the same content-addressed cache
(so a multi-node cluster needs the data dir on a filesystem every node mounts at the same path), and
the driver reads every vector back from there. Search: a grid of (anchor shard x corpus shard)
tasks; the driver merges each anchor's top-k as results arrive. Shard edges follow FAISS's own
blocks (corpus shards start at multiples of its 1024-row BLAS block, anchor shards hold whole search
chunks, cut into the same query tiles), so every score comes from the same single-threaded BLAS call
as in-process (mining.search: whatever the CPUs per task) and the candidates are the in-process ones bit
for bit, ties included. ivf/hnsw: the driver builds the index once and the tasks
search anchor shards of it. A killed worker's task is retried by Ray; the cache keeps what it wrote.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipe_embed.mining.cache import EmbeddingCache, text_keys
from pipe_embed.mining.candidates import Candidates, concat_queries, merge_topk, shard_bounds
from pipe_embed.pipeline.core.console import debug, info
from pipe_embed.pipeline.core.errors import ConfigError, MissingDependency, PipeError

EXECUTORS = ("local", "ray")
GPU_MODES = ("auto", "on", "off")
MAX_RETRIES = 3  # Ray re-runs a task whose worker died this many times
# Corpus shard starts are multiples of this (None: FAISS's BLAS database block, 1024 rows), so the
# sharded sgemm calls equal the unsharded ones. Tests lower it to shard tiny corpora.
CORPUS_ALIGN: int | None = None
# Called as TASK_HOOK(kind, shard) inside the worker at the start of every task ("encode", "search") and
# once an encoding task's vectors are in the cache ("encoded"):
# a seam for fault injection in tests (a hook that kills its worker once). Shipped by value.
TASK_HOOK: Callable[[str, int], None] | None = None


def require_ray() -> Any:
    """The ray module, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency("ray", extra="ray") from exc
    return ray


@dataclass(frozen=True)
class Plan:
    """How the work is spread: workers (task slots), CPUs and GPU per task, where the cluster is."""

    workers: int
    cpus: int
    gpu: bool
    where: str
    fp16: bool = False


def aligned_bounds(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """At most `parts` contiguous, non-empty [start, end) ranges over n items; starts are multiples of align."""
    if n <= 0:
        return []
    blocks = -(-n // max(1, align))
    parts = max(1, min(parts, blocks))
    out = []
    for part in range(parts):
        first, last = shard_bounds(blocks, part, parts)
        out.append((first * align, min(last * align, n)))
    return out


def corpus_align() -> int:
    """Rows per corpus shard boundary: FAISS's BLAS block over the database (1024 unless changed)."""
    if CORPUS_ALIGN is not None:
        return CORPUS_ALIGN
    import faiss

    return int(getattr(faiss.cvar, "distance_compute_blas_database_bs", 1024))


# -- connecting and planning -----------------------------------------------------------------------

def validate(config: Any) -> None:
    """Check the executor fields of a mine config; raises ConfigError naming the field."""
    if config.executor not in EXECUTORS:
        raise ConfigError(f"field 'executor': unknown executor {config.executor!r}", hint="choose local or ray")
    if config.num_workers < 0:
        raise ConfigError("field 'num_workers': must be >= 0 (0: one per CPU, or per GPU, of the cluster)")
    if config.worker_gpu not in GPU_MODES:
        raise ConfigError(f"field 'worker_gpu': unknown mode {config.worker_gpu!r}", hint="choose auto, on or off")
    if config.address and not (config.address == "auto" or config.address.startswith("ray://")
                               or ":" in config.address):
        raise ConfigError(f"field 'address': {config.address!r} is not a Ray address",
                          hint="use auto (a running cluster), ray://HOST:10001 (Ray Client) or HOST:6379")


def connect(address: str | None) -> tuple[Any, bool]:
    """(ray, whether we started it): reuse an initialised Ray, join `address`, or start a local instance."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs["include_dashboard"] = False
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        raise PipeError(f"cannot reach the Ray cluster at {address}: {first}",
                        hint="start it with `ray start --head`, or leave --address unset for a local instance") from exc
    return ray, True


def plan(ray: Any, config: Any) -> Plan:
    """Workers, CPUs per task and GPU use from the config and what the cluster offers."""
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    gpu = config.worker_gpu == "on" or (config.worker_gpu == "auto" and gpus > 0)
    if gpu and gpus == 0:
        raise ConfigError("field 'worker_gpu': 'on' but the Ray cluster has no GPU", hint="use auto or off")
    if config.worker_fp16 and not gpu:
        raise ConfigError("field 'worker_fp16': float16 encoding needs GPU workers, and this cluster has none"
                          if gpus == 0 else "field 'worker_fp16': needs GPU workers (worker_gpu auto or on)")
    workers = config.num_workers or (gpus if gpu else max(1, cpus))
    node_cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    per_task = max(1, cpus // workers) if cpus else 1
    per_task = min(per_task, max(node_cpus, default=1) or 1)  # a task must fit on one node
    where = "a local Ray instance" if not config.address else f"the Ray cluster at {config.address}"
    return Plan(workers=workers, cpus=per_task, gpu=gpu, where=where, fp16=bool(config.worker_fp16))


def _options(p: Plan) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_cpus": p.cpus, "max_retries": MAX_RETRIES, "retry_exceptions": False}
    if p.gpu:
        opts["num_gpus"] = 1
    return opts


def _get(ray: Any, refs: Any, what: str) -> Any:
    """ray.get with our errors: a task's PipeError is re-raised as it is; a worker dead for good says so."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, PipeError):
            raise PipeError(str(cause)) from None  # its one line, as the worker said it
        raise
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PipeError(f"a Ray worker died {MAX_RETRIES + 1} times while {what}: {first}",
                        hint="give the workers more memory or lower --num-workers") from exc


# -- inside the workers ----------------------------------------------------------------------------

_ENCODERS: dict[tuple[Any, ...], Any] = {}  # per worker process: the loaded model stays for the next task


def _worker_setup(cpus: int) -> None:
    """Quiet output; FAISS uses the CPUs this task was given."""
    import faiss

    from pipe_embed.pipeline.core.console import set_verbosity

    set_verbosity(-1)
    faiss.omp_set_num_threads(max(1, cpus))


def fp16_namespace(fingerprint: str) -> str:
    """Cache namespace of float16 vectors: they differ from float32 ones, so they never share a key."""
    return f"{fingerprint}-fp16"


def _worker_encoder(spec: dict[str, Any]) -> Any:
    """This worker's Encoder for spec (model loaded once per process), its cache index re-read."""
    from pipe_embed.mining.dense import Encoder

    key = tuple(sorted((k, str(v)) for k, v in spec.items()))
    encoder = _ENCODERS.get(key)
    if encoder is None:
        encoder = Encoder(spec["model"], backend=spec["backend"], batch_size=spec["batch_size"],
                          cache_root=spec["cache_root"], device=spec["device"])
        if spec["fp16"]:
            encoder.load().half()
        _ENCODERS[key] = encoder
    namespace = fp16_namespace(encoder.fingerprint) if spec["fp16"] else encoder.fingerprint
    encoder.cache = EmbeddingCache(spec["cache_root"], namespace)  # see what other tasks (or a dead try) wrote
    return encoder


def encode_task(spec: dict[str, Any], groups: list[tuple[list[str], str | None]], shard: int,
                hook: Callable[[str, int], None] | None) -> int:
    """Encode one shard's texts (per prompt) into the cache; returns how many were encoded."""
    _worker_setup(spec["cpus"])
    if hook is not None:
        hook("encode", shard)
    encoder = _worker_encoder(spec)
    if any((~encoder.cache.contains(text_keys(texts, prompt))).any() for texts, prompt in groups if texts):
        import torch  # only now: a retry that finds its shard cached loads no model

        torch.set_num_threads(max(1, spec["cpus"]))
    encoded = sum(encoder.encode_shard(texts, prompt, 0, 1, "encode") for texts, prompt in groups if texts)
    if hook is not None:
        hook("encoded", shard)  # the vectors are in the cache, the task has not returned yet
    return encoded


def search_task(queries: np.ndarray, corpus: np.ndarray | None, index_bytes: np.ndarray | None, k: int,
                offset: int, params: dict[str, Any], batch_size: int, cpus: int, shard: int,
                hook: Callable[[str, int], None] | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Top-k of an anchor shard in a corpus shard (global ids), or in the driver's serialised index; CPU seconds."""
    from pipe_embed.mining.dense import IndexParams, build_index, knn_search, search_index

    cpu = time.process_time()
    _worker_setup(cpus)
    if hook is not None:
        hook("search", shard)
    import faiss

    index_params = IndexParams(**params)
    if index_bytes is not None:
        index = faiss.deserialize_index(np.asarray(index_bytes))
        if index_params.kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = min(index_params.nprobe, faiss.extract_index_ivf(index).nlist)
        elif index_params.kind == "hnsw":
            hnsw: Any = faiss.downcast_index(index)  # the stubs type it as the base Index
            hnsw.hnsw.efSearch = max(index_params.ef_search, k)
        found = search_index(index, queries, k, batch_size=batch_size)
    elif index_params.gpu and faiss.get_num_gpus() > 0:
        found = search_index(build_index(corpus, index_params, k), queries, k, batch_size=batch_size,  # type: ignore[arg-type]
                             id_offset=offset)
    else:
        found = knn_search(queries, corpus, k, batch_size=batch_size, id_offset=offset)  # type: ignore[arg-type]
    return found.ids, found.scores, time.process_time() - cpu


# -- the driver --------------------------------------------------------------------------------------

def _missing_by_owner(cache: EmbeddingCache, groups: Sequence[tuple[Sequence[str], str | None]],
                      workers: int) -> list[list[tuple[list[str], str | None]]]:
    """Per worker, per prompt: the distinct texts the cache lacks that this worker owns (key % workers)."""
    shards: list[list[tuple[list[str], str | None]]] = [[] for _ in range(workers)]
    seen: set[bytes] = set()
    for texts, prompt in groups:
        unique = list(dict.fromkeys(texts))
        keys = text_keys(unique, prompt)
        lacking = ~cache.contains(keys)
        owner = (keys[:, 0] % np.uint64(workers)).astype(np.int64)
        per: list[list[str]] = [[] for _ in range(workers)]
        for i in np.flatnonzero(lacking):
            raw = keys[i].tobytes()
            if raw not in seen:  # the same text and prompt among anchors and corpus: encoded once
                seen.add(raw)
                per[owner[i]].append(unique[i])
        for w in range(workers):
            shards[w].append((per[w], prompt))
    return shards


def encode_on_ray(ray: Any, p: Plan, config: Any, encoder: Any,
                  groups: Sequence[tuple[Sequence[str], str | None]]) -> int:
    """Encode what the cache lacks as one task per worker, each writing into the cache; returns the count."""
    if encoder.cache is None:
        raise PipeError("the Ray executor needs the embedding cache (the workers write into it)")
    root = encoder.cache.dir.parent
    namespace = fp16_namespace(encoder.fingerprint) if p.fp16 else encoder.fingerprint
    encoder.cache = EmbeddingCache(root, namespace)
    shards = _missing_by_owner(encoder.cache, groups, p.workers)
    todo = sum(len(t) for shard in shards for t, _ in shard)
    if not todo:
        debug("ray: every vector is in the cache, nothing to encode")
        return 0
    spec = {"model": str(encoder.path), "backend": encoder.backend, "batch_size": encoder.batch_size,
            "cache_root": str(root), "device": "cuda" if p.gpu else "cpu", "fp16": p.fp16, "cpus": p.cpus}
    remote = ray.remote(encode_task).options(**_options(p))
    refs = [remote.remote(spec, shard, number, TASK_HOOK)
            for number, shard in enumerate(shards) if any(texts for texts, _ in shard)]
    info(f"ray: encoding {todo} texts in {len(refs)} tasks")
    _get(ray, refs, "encoding")  # (a retried task counts only what its dead try did not write)
    encoder.cache = EmbeddingCache(root, namespace)  # now with what the workers wrote
    for texts, prompt in groups:
        lacking = int((~encoder.cache.contains(text_keys(list(dict.fromkeys(texts)), prompt))).sum())
        if lacking:
            raise PipeError(f"the Ray workers encoded {todo} texts but {lacking} vectors are not in {root}",
                            hint="on a multi-node cluster the data dir must be on a filesystem every node "
                                 "mounts at the same path (NFS, a shared volume)")
    encoder.encoded += todo
    return todo


def search_on_ray(ray: Any, p: Plan, config: Any, queries: np.ndarray, corpus: np.ndarray, k: int,
                  seconds: dict[str, float] | None = None) -> Candidates:
    """Exact (flat) or index search of every anchor as a grid of Ray tasks; per-anchor top-k merged here.

    `seconds["search_task_cpu"]` gets the CPU time the tasks spent (against the wall time: how much of
    the workers' CPUs the search really had).
    """
    from pipe_embed.mining.dense import IndexParams, build_index

    k = max(1, min(k, len(corpus)))
    batch = config.search_batch_size
    params = IndexParams(kind=config.index, nprobe=config.nprobe, ef_search=config.ef_search)
    anchor_parts = aligned_bounds(len(queries), p.workers, batch)  # whole search chunks, as in-process
    remote = ray.remote(search_task).options(**_options(p))
    fields = {"kind": params.kind, "nprobe": params.nprobe, "ef_search": params.ef_search, "gpu": p.gpu}
    query_refs = [ray.put(np.ascontiguousarray(queries[a:b])) for a, b in anchor_parts]
    if params.kind == "flat":
        corpus_parts = aligned_bounds(len(corpus), p.workers, corpus_align())
        corpus_refs = [ray.put(np.ascontiguousarray(corpus[a:b])) for a, b in corpus_parts]
        index_ref = None
    else:  # an approximate index is built once, here, exactly as in-process; tasks search anchor shards of it
        import faiss

        corpus_parts, corpus_refs = [(0, len(corpus))], [None]
        cpu_params = IndexParams(kind=params.kind, nprobe=params.nprobe, ef_search=params.ef_search, gpu=False)
        index_ref = ray.put(faiss.serialize_index(build_index(corpus, cpu_params, k)))
    pending: dict[Any, int] = {}
    for a, qref in enumerate(query_refs):
        for c, cref in enumerate(corpus_refs):
            ref = remote.remote(qref, cref, index_ref, k, corpus_parts[c][0], fields, batch, p.cpus,
                                a * len(corpus_refs) + c, TASK_HOOK)
            pending[ref] = a
    info(f"ray: searching {len(anchor_parts)} anchor shards x {len(corpus_parts)} corpus shards "
         f"on {p.workers} workers")
    merged: list[Candidates | None] = [None] * len(anchor_parts)
    cpu = 0.0
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        a = pending.pop(done[0])
        ids, scores, task_cpu = _get(ray, done[0], "searching")
        cpu += task_cpu
        part = Candidates(np.array(ids), np.array(scores))  # writable copies of the object-store arrays
        previous = merged[a]
        merged[a] = part if previous is None else merge_topk([previous, part], k)
    del query_refs, corpus_refs, index_ref
    if seconds is not None:
        seconds["search_task_cpu"] = cpu
    return concat_queries([m for m in merged if m is not None])


def ray_dense(config: Any, encoder: Any, anchors: Sequence[str], texts: Sequence[str], k: int,
              seconds: dict[str, float]) -> tuple[np.ndarray, np.ndarray, Candidates]:
    """(anchor vectors, corpus vectors, top-k candidates) computed by Ray tasks: what in-process gives."""
    validate(config)
    ray, started = connect(config.address)
    try:
        p = plan(ray, config)
        info(f"ray: {p.workers} workers x {p.cpus} CPU{'s' if p.cpus > 1 else ''}"
             f"{' + 1 GPU' if p.gpu else ''}{' (float16)' if p.fp16 else ''} on {p.where}")
        start = time.perf_counter()
        encode_on_ray(ray, p, config, encoder, [(anchors, config.query_prompt), (texts, config.passage_prompt)])
        hits_before = encoder.cache_hits
        queries = encoder.encode(anchors, config.query_prompt, "encode anchors")  # all from the cache now
        corpus = encoder.encode(texts, config.passage_prompt, "encode corpus")
        if encoder.encoded and encoder.cache_hits > hits_before:
            encoder.cache_hits = max(0, encoder.cache_hits - encoder.encoded)  # the workers' texts were not hits
        seconds["encode"] = time.perf_counter() - start
        start = time.perf_counter()
        cands = search_on_ray(ray, p, config, queries, corpus, k, seconds)
        seconds["search"] = time.perf_counter() - start
        return queries, corpus, cands
    finally:
        if started:
            ray.shutdown()
