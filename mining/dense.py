"""Dense candidates: encode with sentence-transformers (through the cache), search with FAISS.

Encoding sends only texts the cache lacks, longest-first in chunks (each chunk is cached as soon as
it is done, so a killed run keeps its work), with normalised vectors and optional prompts, on the
fastest backend whose vectors match torch's (pipe_embed.pipeline.core.encoders), and cached by precision
(float32 backends share the weights' namespace; bf16 has its own: mining.cache). Search is
exact inner product (`flat`, by `faiss.knn` on the vectors themselves, tiles of queries in a
thread pool: mining.search)
by default, or `ivf`/`hnsw` for large corpora; on GPU when faiss has one. Queries are searched in chunks, so memory holds the corpus vectors plus chunk x k results,
never a queries x corpus matrix. Both steps are functions of (shard, num_shards) whose outputs
merge: encoding shards fill the same cache; corpus shards' top-k lists merge with `merge_topk`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipe_embed.mining.cache import EmbeddingCache, cache_namespace, text_keys
from pipe_embed.mining.candidates import Candidates, merge_topk, shard_bounds, sort_rows
from pipe_embed.pipeline.core.console import debug, info, progress_bar
from pipe_embed.pipeline.core.errors import PipeError

INDEX_KINDS = ("flat", "ivf", "hnsw")


def _adopt_legacy_namespace(cache_root: Path, fingerprint: str) -> None:
    """Vectors cached as `<hash>-torch` (before the backend left the key) move to `<hash>`, once."""
    old, new = cache_root / f"{fingerprint}-torch", cache_root / fingerprint
    if old.is_dir() and not new.exists():
        try:
            old.rename(new)
        except OSError:  # another process moved it first
            pass


class Encoder:
    """A sentence-transformers model behind the embedding cache; loads the model only if needed.

    The backend (`auto`: OpenVINO native precision, OpenVINO f32, ONNX Runtime f32 on CPU when installed,
    each checked against torch on the first texts to encode, else torch) picks the cache namespace:
    float32 vectors share the weights' one, bf16 ones have their own. One Encoder never mixes them: once
    it has used a namespace without the model (every vector cached) or was handed a cache from outside
    (the Ray executor), a model loaded later runs in float32, the precision of that namespace.
    """

    def __init__(self, model: str | Path | None, *, backend: str = "auto", batch_size: int = 64,
                 cache_root: str | Path | None = None, chunk_size: int = 4096, device: str | None = None,
                 export_root: str | Path | None = None, max_length: int | None = None,
                 precision: str = "auto") -> None:
        from pipe_embed.pipeline.core.encoders import require_backend
        from pipe_embed.pipeline.core.models import model_fingerprint, resolve_model

        self.model_name = str(model) if model is not None else None
        self.path = resolve_model(model)
        require_backend(backend, precision)  # an asked-for backend that is missing fails now, with its pip line
        self.backend = backend
        self.precision = precision  # auto: a fast backend's native precision when it passes, f32: float32 only
        self.backend_name: str | None = None  # the backend in use with its precision (openvino-bf16, torch), once loaded
        self.note: str | None = None  # why that one, in a line
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.device = device
        self.max_length = max_length
        self.fingerprint = model_fingerprint(model)
        if export_root is None and cache_root is not None:
            export_root = Path(cache_root).parent / "backends"  # beside the embedding cache
        self.export_root = export_root
        self.cache_root = Path(cache_root) if cache_root else None
        self.cache: EmbeddingCache | None = None
        if self.cache_root is not None:
            _adopt_legacy_namespace(self.cache_root, self.fingerprint)
            self.cache = EmbeddingCache(self.cache_root, self.fingerprint)
        self._own_cache = self.cache  # replaced from outside (Ray executor): its namespace is fixed
        self._used = False  # vectors were read or written: the namespace is fixed
        self._model: Any = None
        self.encoded = 0  # texts actually sent through the model
        self.cache_hits = 0

    def _precision_open(self) -> bool:
        """Whether the model may still pick a non-float32 precision (and so the cache namespace)."""
        return self.cache is None or (self.cache is self._own_cache and not self._used)

    def load(self, sample: Sequence[str] | None = None) -> Any:
        """Load the model on its fastest checked backend (checked on `sample`, sized by it, else built-in texts)."""
        if self._model is None:
            from pipe_embed.pipeline.core.encoders import load_encoder

            self._model, self.backend_name, self.note = load_encoder(
                self.model_name, self.backend, self.device, export_root=self.export_root, sample=sample,
                max_length=self.max_length, texts_to_encode=len(sample) if sample is not None else None,
                precision=self.precision if self._precision_open() else "f32")
            info(f"encoder: {self.note}")
            if self.cache is not None and self.cache is self._own_cache and self.cache_root is not None:
                namespace = cache_namespace(self.fingerprint, self.backend_name)
                if namespace != self.cache.dir.name:
                    self.cache = self._own_cache = EmbeddingCache(self.cache_root, namespace)
        return self._model

    @property
    def namespace(self) -> str | None:
        """The cache namespace in use (None without a cache)."""
        return self.cache.dir.name if self.cache is not None else None

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded on first use)."""
        return self.load()

    def _present(self, texts: list[str], keys: np.ndarray, prompt: str | None) -> np.ndarray:
        """Which keys the cache holds; with some missing and the precision open, the model loads first, so
        the lookup is in the namespace of the precision that will encode them."""
        assert self.cache is not None
        present = self.cache.contains(keys)
        if not present.all() and self._model is None and self._precision_open():
            missing = dict.fromkeys(texts[i] for i in np.flatnonzero(~present))
            self.load([(prompt or "") + t for t in missing])
            present = self.cache.contains(keys)
        self._used = True
        return present

    def _encode_now(self, texts: list[str], prompt: str | None) -> np.ndarray:
        """Run the model on texts (no cache); the first call checks the backend on these texts."""
        model = self._model if self._model is not None else self.load([(prompt or "") + t for t in texts])
        vectors = model.encode(texts, batch_size=self.batch_size, prompt=prompt, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        vectors = np.asarray(vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise PipeError(f"model '{self.model_name}' produced non-finite embeddings")
        self.encoded += len(texts)
        return vectors

    def _fill(self, texts: list[str], keys: np.ndarray, prompt: str | None, description: str) -> np.ndarray | None:
        """Encode texts longest first in chunks; store each chunk in the cache (or return all)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        collected = None if self.cache is not None else [None] * len(texts)
        with progress_bar(description, len(texts)) as advance:
            for start in range(0, len(order), self.chunk_size):
                chunk = order[start:start + self.chunk_size]
                vectors = self._encode_now([texts[i] for i in chunk], prompt)
                if self.cache is not None:
                    self.cache.put(keys[chunk], vectors)
                else:
                    for i, v in zip(chunk, vectors):
                        collected[i] = v  # type: ignore[index]
                advance(len(chunk))
        return None if collected is None else np.stack(collected)  # type: ignore[arg-type]

    def encode(self, texts: Sequence[str], prompt: str | None = None, description: str = "encode") -> np.ndarray:
        """Normalised float32 vectors of texts, from the cache where possible."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim()), dtype=np.float32)
        keys = text_keys(texts, prompt)
        if self.cache is None:
            unique = list(dict.fromkeys(texts))
            vectors = self._fill(unique, text_keys(unique, prompt), prompt, description)
            where = {t: i for i, t in enumerate(unique)}
            return vectors[[where[t] for t in texts]]  # type: ignore[index]
        present = self._present(texts, keys, prompt)
        missing: dict[str, int] = {}
        for i in np.flatnonzero(~present):
            missing.setdefault(texts[i], int(i))
        self.cache_hits += int(present.sum())
        if missing:
            debug(f"{description}: {len(missing)} texts to encode, {int(present.sum())} cached")
            idx = np.fromiter(missing.values(), dtype=np.int64, count=len(missing))
            self._fill(list(missing), keys[idx], prompt, description)
        return self.cache.get(keys)

    def encode_shard(self, texts: Sequence[str], prompt: str | None, shard: int, num_shards: int,
                     description: str = "encode") -> int:
        """Encode this shard's share of the texts the cache lacks; returns how many were encoded."""
        if self.cache is None:
            raise ValueError("sharded encoding needs a cache to merge into")
        unique = list(dict.fromkeys(texts))
        keys = text_keys(unique, prompt)
        owner = (keys[:, 0] % np.uint64(num_shards)).astype(np.int64)  # stable across processes
        ours = np.flatnonzero(owner == shard)
        mine = ours[~self._present([unique[i] for i in ours], keys[ours], prompt)]
        before = self.encoded
        if len(mine):
            self._fill([unique[i] for i in mine], keys[mine], prompt, f"{description} {shard + 1}/{num_shards}")
        return self.encoded - before

    def dim(self) -> int:
        """Embedding dimension (from the cache when it knows, else from the model)."""
        if self.cache is not None and self.cache.dim is not None:
            return self.cache.dim
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())


@dataclass(frozen=True)
class IndexParams:
    """FAISS index choice and its search-time knobs."""

    kind: str = "flat"
    nlist: int | None = None  # ivf: number of cells (default about 4 sqrt(n))
    nprobe: int = 32  # ivf: cells visited per query
    hnsw_m: int = 32
    ef_search: int = 128
    gpu: bool = True  # use GPU faiss when present


def _gpu_count(faiss: Any) -> int:
    try:
        return int(faiss.get_num_gpus())
    except Exception:
        return 0


def build_index(vectors: np.ndarray, params: IndexParams = IndexParams(), k: int = 1) -> Any:
    """A FAISS inner-product index over vectors (flat exact, ivf or hnsw)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    index: Any  # a faiss index: flat, IVF, HNSW, or a GPU copy of one
    if params.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif params.kind == "ivf":
        nlist = params.nlist or int(4 * np.sqrt(n))
        nlist = max(1, min(nlist, n // 39 or 1))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = vectors if n <= 256 * nlist else vectors[np.sort(rng.choice(n, 256 * nlist, replace=False))]
        index.train(train)
        index.nprobe = min(params.nprobe, nlist)
    elif params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(params.ef_search, k)
    else:
        raise ValueError(f"unknown index kind {params.kind!r} (choose {', '.join(INDEX_KINDS)})")
    if params.gpu and params.kind != "hnsw" and _gpu_count(faiss) > 0:
        debug(f"faiss: moving the {params.kind} index to {_gpu_count(faiss)} GPU(s)")
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(vectors)
    return index


def search_index(index: Any, queries: np.ndarray, k: int, *, batch_size: int = 4096, id_offset: int = 0,
                 description: str = "faiss search") -> Candidates:
    """Top-k of every query in chunks of batch_size (memory: one chunk's results at a time)."""
    n = len(queries)
    k = max(1, min(k, index.ntotal))
    ids = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    with progress_bar(description, n) as advance:
        for start in range(0, n, batch_size):
            chunk = np.ascontiguousarray(queries[start:start + batch_size], dtype=np.float32)
            s, i = index.search(chunk, k)
            part = sort_rows(np.where(i >= 0, i + id_offset, -1), s)  # ties by index: deterministic
            scores[start:start + len(chunk)] = part.scores
            ids[start:start + len(chunk)] = part.ids
            advance(len(chunk))
    return Candidates(ids, scores)


def knn_search(queries: np.ndarray, corpus: np.ndarray, k: int, *, batch_size: int = 4096, id_offset: int = 0,
               description: str = "faiss search") -> Candidates:
    """Exact inner-product top-k with `faiss.knn` on the corpus array itself (no index copy), in query tiles."""
    from pipe_embed.mining.search import exact_search

    return exact_search(queries, corpus, k, batch_size=batch_size, id_offset=id_offset, description=description)


def _use_knn(params: IndexParams) -> bool:
    """Exact flat search on CPU runs on the array itself; GPU and approximate kinds need an index."""
    if params.kind != "flat":
        return False
    if params.gpu:
        import faiss

        return _gpu_count(faiss) == 0
    return True


def search_shard(queries: np.ndarray, corpus: np.ndarray, k: int, shard: int, num_shards: int,
                 params: IndexParams = IndexParams(), batch_size: int = 4096) -> Candidates:
    """Top-k of every query within one contiguous corpus shard (ids are global corpus indices)."""
    start, end = shard_bounds(len(corpus), shard, num_shards)
    if start == end:
        return Candidates.empty(len(queries), k)
    if _use_knn(params):
        return knn_search(queries, corpus[start:end], k, batch_size=batch_size, id_offset=start,
                          description=f"faiss search {shard + 1}/{num_shards}")
    index = build_index(corpus[start:end], params, k)
    return search_index(index, queries, k, batch_size=batch_size, id_offset=start,
                        description=f"faiss search {shard + 1}/{num_shards}")


def dense_search(queries: np.ndarray, corpus: np.ndarray, k: int, params: IndexParams = IndexParams(),
                 *, batch_size: int = 4096, num_shards: int = 1) -> Candidates:
    """Top-k corpus indices for every query; with num_shards > 1, shard the corpus and merge."""
    k = max(1, min(k, len(corpus)))
    if num_shards <= 1:
        if _use_knn(params):
            return knn_search(queries, corpus, k, batch_size=batch_size)
        return search_index(build_index(corpus, params, k), queries, k, batch_size=batch_size)
    parts = [search_shard(queries, corpus, k, s, num_shards, params, batch_size) for s in range(num_shards)]
    return merge_topk(parts, k)


def pair_scores(left: np.ndarray, right: np.ndarray, left_index: np.ndarray, right_index: np.ndarray,
                batch_size: int = 65536) -> np.ndarray:
    """Dot products of given (left row, right row) pairs, in chunks."""
    out = np.empty(len(left_index), dtype=np.float32)
    for start in range(0, len(left_index), batch_size):
        a = left[left_index[start:start + batch_size]]
        b = right[right_index[start:start + batch_size]]
        out[start:start + batch_size] = np.einsum("ij,ij->i", a, b)
    return out


def candidate_scores(queries: np.ndarray, corpus: np.ndarray, cand_ids: np.ndarray) -> np.ndarray:
    """Dense score of every (query, candidate) slot; -inf for empty slots."""
    rows, cols = np.nonzero(cand_ids >= 0)
    out = np.full(cand_ids.shape, -np.inf, dtype=np.float32)
    out[rows, cols] = pair_scores(queries, corpus, rows, cand_ids[rows, cols])
    return out
