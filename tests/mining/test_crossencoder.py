"""Cross-encoder veto: batched over all queries, drops candidates scored like the positive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipe_embed.mining.crossencoder import cross_encoder_drops
from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.store import Artifact, Store


class FakeCrossEncoder:
    """Scores a pair by how many words it shares; records how it was called."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, pairs, batch_size=32, show_progress_bar=False, convert_to_numpy=True):
        self.calls.append(len(pairs))
        return np.array([len(set(a.split()) & set(b.split())) for a, b in pairs], dtype=np.float32)


def test_one_batched_call_and_drops_candidates_scored_like_the_positive():
    model = FakeCrossEncoder()
    texts = ["red apple fruit", "red car", "apple pie", "blue sky"]
    cand_ids = np.array([[1, 2, 3], [0, 3, -1]])
    survivors = np.array([[True, True, True], [True, False, False]])
    drops, cand_scores, pos_scores = cross_encoder_drops(
        model, anchors=["red apple", "blue sky"], positives=["red apple fruit", "blue sky"], texts=texts,
        cand_ids=cand_ids, survivors=survivors)
    assert model.calls == [4 + 2]  # every surviving candidate and every positive in one call
    assert pos_scores.tolist() == [2, 2]
    assert drops.tolist() == [[False, False, False], [False, False, False]]
    strict = cross_encoder_drops(model, ["red apple", "blue sky"], ["red apple fruit", "blue sky"], texts,
                                 cand_ids, survivors, margin=1.0)[0]
    assert strict.tolist() == [[True, True, False], [False, False, False]]  # 1 >= 2 - 1


def test_mine_with_a_cross_encoder_counts_its_drops(store: Store, compose: Artifact, tiny_model_path: Path):
    cfg = MineConfig(method="bm25", range_max=10, cross_encoder=str(tiny_model_path), cross_encoder_margin=100.0)
    art = run_mine(store, cfg, compose).artifact
    # with a huge margin every surviving candidate is judged positive: all vetoed, none kept
    assert art.stats["dropped"]["cross_encoder"] > 0 and art.stats["negatives"] == 0
    assert art.manifest["fingerprint_extra"]["cross_encoder"]


def test_a_cross_encoder_that_cannot_load_is_one_clear_error(store: Store, compose: Artifact, tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(PipeError, match="cannot load cross-encoder"):
        run_mine(store, MineConfig(method="bm25", cross_encoder=str(broken)), compose)
    assert store.versions("mine") == []


def test_onnx_backend_without_its_extra_names_the_pip_line(store: Store, compose: Artifact, tiny_model_path: Path):

    from pipe_embed.pipeline.core.encoders import backend_installed

    if backend_installed("onnx"):
        pytest.skip("the onnx extra is installed here")
    with pytest.raises(PipeError, match=r'pip install "pipe-embed\[onnx\]"'):
        run_mine(store, MineConfig(method="faiss", model=str(tiny_model_path), backend="onnx"), compose)
