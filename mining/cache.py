"""Embedding cache: vectors keyed by hash(model weights, prompt, text), stored as .npy shards.

Layout: `<root>/<namespace>/<shard>.vecs.npy` (float32, n x dim) and `<shard>.keys.npy` (uint64,
n x 2: a 128-bit hash of prompt and text). The namespace is the model's weight fingerprint, so new
weights never see old vectors, shared by every backend computing in float32 (torch, onnx-f32,
openvino-f32: the same vectors); a backend in another precision (openvino-bf16) gets its own,
`<fingerprint>-<backend>`, so vectors of different precisions never mix. A shard counts only once its keys file exists
(written last, by rename), so concurrent writers (shards of one run) and crashes are safe. No pickle.
A shard that cannot be read or holds non-finite vectors is removed with a warning and its texts are
encoded again.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipe_embed.pipeline.core.console import debug, warn
from pipe_embed.pipeline.core.encoders import is_float32
from pipe_embed.pipeline.core.errors import PipeError

KEYS, VECS = ".keys.npy", ".vecs.npy"


def cache_namespace(fingerprint: str, backend: str) -> str:
    """The namespace of vectors from a backend in use: the weights' hash for float32 ones, else `<hash>-<backend>`."""
    return fingerprint if is_float32(backend) else f"{fingerprint}-{backend}"


def text_key(text: str, prompt: str | None = None) -> bytes:
    """128-bit key of a text as encoded with a prompt."""
    payload = (prompt or "") + "\x00" + text
    return hashlib.sha256(payload.encode("utf-8")).digest()[:16]


def text_keys(texts: Sequence[str], prompt: str | None = None) -> np.ndarray:
    """Keys of many texts as an (n, 2) uint64 array."""
    raw = b"".join(text_key(t, prompt) for t in texts)
    return np.frombuffer(raw, dtype=np.uint64).reshape(len(texts), 2).copy()


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


class EmbeddingCache:
    """Normalised embeddings of one model (namespace), looked up by text key."""

    def __init__(self, root: str | Path, namespace: str) -> None:
        self.dir = Path(root) / namespace
        self._index: dict[bytes, tuple[int, int]] = {}
        self._shards: list[Path] = []  # vector files; mapped only while reading, so RSS stays small
        self.dim: int | None = None
        self._load()

    def _drop_shard(self, stem: Path, reason: str) -> None:
        warn(f"embedding cache: {stem.name} is corrupt ({reason}); removing it, its texts will be encoded again")
        for suffix in (KEYS, VECS):
            try:
                (stem.parent / (stem.name + suffix)).unlink()
            except FileNotFoundError:
                pass

    def _load(self) -> None:
        if not self.dir.is_dir():
            return
        for keys_path in sorted(self.dir.glob("*" + KEYS)):
            stem = keys_path.parent / keys_path.name[: -len(KEYS)]
            vecs_path = stem.parent / (stem.name + VECS)
            try:
                keys = np.load(keys_path, allow_pickle=False)
                vecs = np.load(vecs_path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                self._drop_shard(stem, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                continue
            if (keys.ndim != 2 or keys.shape[1] != 2 or keys.dtype != np.uint64 or vecs.ndim != 2
                    or vecs.shape[0] != keys.shape[0] or vecs.dtype != np.float32):
                self._drop_shard(stem, f"shape {keys.shape}/{vecs.shape}")
                continue
            if self.dim is not None and vecs.shape[1] != self.dim:
                self._drop_shard(stem, f"dimension {vecs.shape[1]} != {self.dim}")
                continue
            if not np.isfinite(vecs).all():
                self._drop_shard(stem, "non-finite values")
                continue
            self.dim = int(vecs.shape[1])
            del vecs
            number = len(self._shards)
            self._shards.append(vecs_path)
            for row, key in enumerate(keys):
                self._index[key.tobytes()] = (number, row)
        if self._index:
            debug(f"embedding cache {self.dir}: {len(self._index)} vectors in {len(self._shards)} shards")

    def __len__(self) -> int:
        return len(self._index)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Which keys have a vector."""
        return np.fromiter((k.tobytes() in self._index for k in keys), dtype=bool, count=len(keys))

    def get(self, keys: np.ndarray, out: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """Vectors of keys that are all present (into `out[rows]` when given)."""
        if self.dim is None:
            raise KeyError("empty cache")
        located = [self._index[k.tobytes()] for k in keys]
        if out is None:
            out = np.empty((len(keys), self.dim), dtype=np.float32)
            rows = np.arange(len(keys))
        assert rows is not None
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for target, (shard, row) in zip(rows, located):
            by_shard.setdefault(shard, []).append((int(target), row))
        for shard, pairs in by_shard.items():
            targets = np.fromiter((t for t, _ in pairs), dtype=np.int64, count=len(pairs))
            source = np.fromiter((r for _, r in pairs), dtype=np.int64, count=len(pairs))
            order = np.argsort(source)  # read the memory-mapped shard in file order
            try:
                vecs = np.load(self._shards[shard], mmap_mode="r", allow_pickle=False)
                out[targets[order]] = vecs[source[order]]
            except (OSError, ValueError, IndexError) as exc:
                raise PipeError(f"embedding cache: {self._shards[shard]} changed while in use ({exc})",
                                hint="run again; a damaged shard is then removed and recomputed") from exc
            finally:
                vecs = None
        return out

    def put(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Store vectors for keys as a new shard (vectors first, keys last: the shard's commit)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(keys) == 0:
            return
        if vectors.shape[0] != len(keys) or vectors.ndim != 2:
            raise ValueError("keys and vectors differ in length")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise PipeError(f"embedding cache {self.dir}: vectors of dimension {vectors.shape[1]} "
                            f"do not match the cached {self.dim}", hint="delete that cache directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = self.dir / f"{uuid.uuid4().hex}"
        _save_npy(stem.parent / (stem.name + VECS), vectors)
        _save_npy(stem.parent / (stem.name + KEYS), np.ascontiguousarray(keys, dtype=np.uint64))
        self.dim = int(vectors.shape[1])
        number = len(self._shards)
        self._shards.append(stem.parent / (stem.name + VECS))
        for row, key in enumerate(keys):
            self._index[key.tobytes()] = (number, row)
