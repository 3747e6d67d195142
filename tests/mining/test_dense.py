"""Dense mining: encoding through the cache, FAISS flat/ivf/hnsw, chunked and sharded search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipe_embed.mining.cache import EmbeddingCache, text_keys
from pipe_embed.mining.candidates import sort_rows
from pipe_embed.mining.dense import (
    Encoder,
    IndexParams,
    build_index,
    dense_search,
    search_index,
)
from tests.mining.conftest import GLOSSARY

TEXTS = [d for _, d in GLOSSARY]


def exact_top_k(queries: np.ndarray, corpus: np.ndarray, k: int):
    scores = queries @ corpus.T
    return sort_rows(np.tile(np.arange(len(corpus)), (len(queries), 1)), scores, k)


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(3000, 32)).astype(np.float32)
    queries = rng.normal(size=(200, 32)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries, corpus


def test_flat_search_is_exact_and_chunking_changes_nothing(vectors):
    queries, corpus = vectors
    expected = exact_top_k(queries, corpus, 20)
    one_shot = dense_search(queries, corpus, 20, batch_size=len(queries))
    chunked = dense_search(queries, corpus, 20, batch_size=7)
    assert (one_shot.ids == expected.ids).all() and np.allclose(one_shot.scores, expected.scores, atol=1e-5)
    assert (chunked.ids == one_shot.ids).all() and np.allclose(chunked.scores, one_shot.scores, atol=1e-6)


def test_sharded_corpus_search_merges_to_the_unsharded_result(vectors):
    queries, corpus = vectors
    whole = dense_search(queries, corpus, 15)
    sharded = dense_search(queries, corpus, 15, num_shards=4)
    assert (sharded.ids == whole.ids).all() and np.allclose(sharded.scores, whole.scores, atol=1e-5)


def test_ivf_with_every_cell_probed_is_exact_and_hnsw_recalls_most(vectors):
    queries, corpus = vectors
    expected = exact_top_k(queries, corpus, 10)
    ivf = dense_search(queries, corpus, 10, IndexParams(kind="ivf", nlist=16, nprobe=16))
    assert (ivf.ids == expected.ids).all()
    hnsw = dense_search(queries, corpus, 10, IndexParams(kind="hnsw", ef_search=200))
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hnsw.ids, expected.ids)])
    assert recall >= 0.9


def test_k_larger_than_the_corpus_is_capped(vectors):
    queries, corpus = vectors
    out = search_index(build_index(corpus[:5]), queries[:3], 50)
    assert out.k == 5 and (out.ids >= 0).all()


def test_encoder_uses_the_cache_and_encodes_nothing_the_second_time(tiny_model_path: Path, tmp_path: Path):
    first = Encoder(tiny_model_path, cache_root=tmp_path, chunk_size=5)
    vecs = first.encode(TEXTS + TEXTS[:3])
    assert first.encoded == len(TEXTS)  # duplicates encoded once
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    direct = first.model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(vecs[: len(TEXTS)], direct, atol=1e-5)
    second = Encoder(tiny_model_path, cache_root=tmp_path)
    again = second.encode(TEXTS)
    assert second.encoded == 0 and second._model is None  # the model was not even loaded
    assert np.array_equal(again, vecs[: len(TEXTS)])
    prompted = second.encode(TEXTS[:2], prompt="query: ")
    assert second.encoded == 2 and not np.allclose(prompted, again[:2])  # the prompt is part of the key


def test_new_weights_never_reuse_cached_vectors(tiny_model_path: Path, tmp_path: Path):
    from tests.tiny_model import build_tiny_model

    other = build_tiny_model(tmp_path / "other", seed=1)
    a = Encoder(tiny_model_path, cache_root=tmp_path / "cache")
    a.encode(TEXTS)
    b = Encoder(other, cache_root=tmp_path / "cache")
    assert b.fingerprint != a.fingerprint
    b.encode(TEXTS)
    assert b.encoded == len(TEXTS)


def test_sharded_encoding_fills_the_cache_for_the_full_run(tiny_model_path: Path, tmp_path: Path):
    encoded = 0
    for shard in range(3):
        encoded += Encoder(tiny_model_path, cache_root=tmp_path).encode_shard(TEXTS, None, shard, 3)
    assert encoded == len(TEXTS)
    final = Encoder(tiny_model_path, cache_root=tmp_path)
    final.encode(TEXTS)
    assert final.encoded == 0


def test_a_corrupt_cache_shard_is_removed_with_a_warning_and_recomputed(tiny_model_path: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture):
    enc = Encoder(tiny_model_path, cache_root=tmp_path)
    reference = enc.encode(TEXTS)
    shard = next(enc.cache.dir.glob("*.vecs.npy"))
    shard.write_bytes(shard.read_bytes()[:100])  # truncated
    again = Encoder(tiny_model_path, cache_root=tmp_path)
    assert "corrupt" in capsys.readouterr().err
    vecs = again.encode(TEXTS)
    assert again.encoded == len(TEXTS) and np.allclose(vecs, reference, atol=1e-5)


def test_cache_stores_no_pickle_and_rejects_nan(tmp_path: Path, capsys: pytest.CaptureFixture):
    cache = EmbeddingCache(tmp_path, "ns")
    keys = text_keys(["a", "b"])
    cache.put(keys, np.array([[1.0, 0.0], [np.nan, 1.0]], dtype=np.float32))
    for path in cache.dir.iterdir():
        np.load(path, allow_pickle=False)
    reopened = EmbeddingCache(tmp_path, "ns")
    assert len(reopened) == 0 and "non-finite" in capsys.readouterr().err


def test_knn_path_and_index_path_agree(vectors):
    from pipe_embed.mining.dense import knn_search

    queries, corpus = vectors
    via_index = search_index(build_index(corpus), queries, 12, batch_size=50)
    via_knn = knn_search(queries, corpus, 12, batch_size=33)
    assert (via_index.ids == via_knn.ids).all() and np.allclose(via_index.scores, via_knn.scores, atol=1e-5)


# -- backends: speed, never vectors ---------------------------------------------------------------

def test_the_cache_is_shared_by_every_backend(tiny_model_path: Path, tmp_path: Path):
    torch_encoder = Encoder(tiny_model_path, backend="torch", cache_root=tmp_path)
    vecs = torch_encoder.encode(TEXTS)
    assert torch_encoder.backend_name == "torch" and torch_encoder.cache.dir.name == torch_encoder.fingerprint
    auto = Encoder(tiny_model_path, backend="auto", cache_root=tmp_path)
    assert np.array_equal(auto.encode(TEXTS), vecs)
    assert auto.encoded == 0 and auto._model is None


def test_vectors_cached_under_the_old_backend_namespace_are_kept(tiny_model_path: Path, tmp_path: Path):
    from pipe_embed.pipeline.core.models import model_fingerprint

    old = EmbeddingCache(tmp_path, f"{model_fingerprint(tiny_model_path)}-torch")
    old.put(text_keys(TEXTS), np.eye(len(TEXTS), 8, dtype=np.float32))
    enc = Encoder(tiny_model_path, cache_root=tmp_path)
    assert np.array_equal(enc.encode(TEXTS), np.eye(len(TEXTS), 8, dtype=np.float32)) and enc.encoded == 0


def test_an_asked_backend_that_is_missing_fails_before_any_work(tiny_model_path: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    from pipe_embed.pipeline.core import encoders
    from pipe_embed.pipeline.core.errors import MissingDependency

    monkeypatch.setitem(encoders.BACKEND_MODULES, "openvino", ("pipe_embed_no_such_runtime",))
    with pytest.raises(MissingDependency, match=r'pip install "pipe-embed\[openvino\]"'):
        Encoder(tiny_model_path, backend="openvino", cache_root=tmp_path)


# -- precisions: float32 backends share the cache, another precision has its own -----------------------

class Shifted:
    """A stand-in for a model in another precision: the tiny model's vectors, moved a little."""

    def __init__(self, st) -> None:
        self.st = st

    def encode(self, texts, **kwargs):
        vecs = self.st.encode(texts, **kwargs) + np.float32(1e-3)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    def __getattr__(self, name):
        return getattr(self.st, name)


@pytest.fixture()
def native_stand_in(monkeypatch: pytest.MonkeyPatch):
    """load_encoder that 'picks' openvino-bf16 (moved vectors) under precision auto, openvino-f32 (torch's) under f32;
    returns the precisions asked for, in order."""
    from pipe_embed.pipeline.core import encoders
    from pipe_embed.pipeline.core.models import load_model

    asked: list[str] = []

    def fake(model, backend="auto", device=None, *, precision="auto", **_kwargs):
        st = load_model(model, device=device)
        if backend == "torch":
            return st, "torch", "torch (as asked)"
        asked.append(precision)
        if precision == "auto":
            return Shifted(st), "openvino-bf16", "openvino-bf16: min cosine to torch 0.99998 on 32 texts"
        return st, "openvino-f32", "openvino-f32: min cosine to torch 1.000000 on 32 texts"

    monkeypatch.setattr(encoders, "load_encoder", fake)
    return asked


def test_another_precision_never_shares_vectors_with_float32(native_stand_in, tiny_model_path: Path, tmp_path: Path):
    from pipe_embed.mining.cache import cache_namespace

    torch_vecs = Encoder(tiny_model_path, backend="torch", cache_root=tmp_path).encode(TEXTS[:5])
    native = Encoder(tiny_model_path, cache_root=tmp_path)
    vecs = native.encode(TEXTS)
    assert native.backend_name == "openvino-bf16" and native_stand_in == ["auto"]
    assert native.namespace == cache_namespace(native.fingerprint, "openvino-bf16") == f"{native.fingerprint}-openvino-bf16"
    assert native.encoded == len(TEXTS) and native.cache_hits == 0  # the 5 float32 vectors were not taken
    assert not np.allclose(vecs[:5], torch_vecs, atol=1e-6) and np.allclose(vecs[:5], torch_vecs, atol=1e-2)
    again = Encoder(tiny_model_path, cache_root=tmp_path)
    assert np.array_equal(again.encode(TEXTS), vecs) and again.encoded == 0
    f32 = Encoder(tiny_model_path, backend="torch", cache_root=tmp_path)
    assert np.array_equal(f32.encode(TEXTS)[:5], torch_vecs) and f32.encoded == len(TEXTS) - 5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([native.fingerprint, native.namespace])


def test_after_float32_cache_hits_the_model_loads_in_float32(native_stand_in, tiny_model_path: Path, tmp_path: Path):
    Encoder(tiny_model_path, backend="torch", cache_root=tmp_path).encode(TEXTS[:5])
    enc = Encoder(tiny_model_path, cache_root=tmp_path)
    enc.encode(TEXTS[:5])  # every vector cached (float32): the model is not loaded
    assert enc._model is None and native_stand_in == []
    enc.encode(TEXTS[5:])  # the rest, in the same precision as the first five
    assert native_stand_in == ["f32"] and enc.backend_name == "openvino-f32" and enc.namespace == enc.fingerprint


def test_a_cache_handed_in_fixes_the_namespace(native_stand_in, tiny_model_path: Path, tmp_path: Path):
    """The Ray executor gives its workers the float32 namespace: they encode in float32 into it."""
    enc = Encoder(tiny_model_path, cache_root=tmp_path)
    enc.cache = EmbeddingCache(tmp_path, enc.fingerprint)
    assert enc.encode_shard(TEXTS, None, 0, 1) == len(TEXTS)
    assert native_stand_in == ["f32"] and enc.namespace == enc.fingerprint


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["f32", "native"])
def test_mining_with_auto_picks_the_same_negatives_as_torch(precision: str, tiny_model_path: Path, tmp_path: Path,
                                                            chess_html: Path, monkeypatch: pytest.MonkeyPatch):
    """Real tiny model, real fast backend, 300 chess terms: the same version as torch, the same negatives in
    float32, nearly the same in the native precision (bf16 on AMX CPUs)."""
    from pipe_embed.mining.stage import MineConfig, cache_root, make_encoder, run_mine
    from pipe_embed.pipeline.core import encoders
    from pipe_embed.pipeline.core.pairs import read_pairs
    from pipe_embed.pipeline.core.store import Store
    from tests.mining.conftest import chess_pairs, make_compose, row

    if not any(encoders.backend_installed(b) for b in encoders.FAST_BACKENDS):
        pytest.skip('no fast backend installed (pip install "pipe-embed[openvino]")')
    out = {}
    for backend in ("torch", "auto"):
        store = Store(tmp_path / backend / "data")
        rows = [row(term, [definition]) for term, definition in chess_pairs(chess_html, 300)]
        compose = make_compose(store, {"train": rows, "dev": [], "test": []})
        config = MineConfig(method="faiss", model=str(tiny_model_path), backend=backend, relative_margin=0.0,
                            precision="f32" if precision == "f32" else "auto")  # --precision f32: torch's vectors
        encoder = make_encoder(config, cache_root(store))
        art = run_mine(store, config, compose, encoder=encoder).artifact
        out[backend] = (art, encoder, {r["id"]: (r["negative_ids"], r["negative_scores"])
                                       for r in read_pairs(art.file("pairs.jsonl"))})
    (torch_art, torch_encoder, torch_negs), (auto_art, auto_encoder, auto_negs) = out["torch"], out["auto"]
    assert torch_encoder.backend_name == "torch" and torch_art.stats["encoder"] == "torch"
    assert auto_encoder.backend_name.startswith(("openvino-", "onnx-")) and "cosine" in auto_encoder.note
    assert auto_art.stats["encoder"] == auto_encoder.backend_name  # recorded in the artifact
    assert auto_art.stats["embedding_namespace"] == auto_encoder.namespace
    assert (precision == "f32") <= (auto_encoder.backend_name.endswith("-f32"))
    assert (tmp_path / "auto" / "data" / ".cache" / "backends" / auto_encoder.fingerprint).is_dir()
    assert auto_art.version == torch_art.version  # the backend is not part of the version
    assert auto_negs.keys() == torch_negs.keys() and sum(len(ids) for ids, _ in torch_negs.values()) > 0
    # The random tiny model scores many candidates alike (gaps of 0 to 1e-7), so a tie may break the
    # other way: the chosen scores agree everywhere, the chosen texts almost everywhere.
    exact = auto_encoder.backend_name.endswith("-f32")
    for key, (_ids, scores) in torch_negs.items():
        assert np.allclose(sorted(scores), sorted(auto_negs[key][1]), atol=1e-5 if exact else 2e-3), key
    same = np.mean([ids == auto_negs[key][0] for key, (ids, _) in torch_negs.items()])
    jaccard = np.mean([len(set(ids) & set(auto_negs[key][0])) / len(set(ids) | set(auto_negs[key][0]))
                       for key, (ids, _) in torch_negs.items() if ids or auto_negs[key][0]])
    print(f"{auto_encoder.backend_name}: anchors with identical negatives {same:.3f}, mean Jaccard {jaccard:.3f}")
    assert same >= (0.9 if exact else 0.7) and jaccard >= (0.95 if exact else 0.8)
