"""KURE's weighted symmetric loss: a hand computation on tiny tensors, the library's own at equal weights, a run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.config import TrainConfig, load_train_config
from pipe_embed.training.losses import WeightedSymmetricLoss

SCALE = 20.0


def tiny_batch() -> list[torch.Tensor]:
    """Anchors, positives and one mined negative each: 3 rows of 4-d vectors."""
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(3, 4, generator=gen) for _ in range(3)]


def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def info_nce(logits: list[float], target: int) -> float:
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


def by_hand(q2d_weight: float, d2q_weight: float) -> float:
    """q2d: anchor i against every positive and every mined negative of the batch; d2q: positive i against
    every anchor of the batch. Each a mean cross-entropy with the true pair as the target."""
    anchors, positives, negatives = (t.tolist() for t in tiny_batch())
    rows = range(len(anchors))
    q2d = [info_nce([SCALE * cos(anchors[i], d) for d in positives + negatives], i) for i in rows]
    d2q = [info_nce([SCALE * cos(positives[i], a) for a in anchors], i) for i in rows]
    return q2d_weight * sum(q2d) / len(q2d) + d2q_weight * sum(d2q) / len(d2q)


@pytest.mark.parametrize("q2d,d2q", [(0.2, 0.8), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_the_loss_is_the_weighted_sum_of_both_directions(q2d: float, d2q: float) -> None:
    loss = WeightedSymmetricLoss(None, q2d_weight=q2d, d2q_weight=d2q, scale=SCALE)
    value = loss.compute_loss_from_embeddings(tiny_batch(), torch.zeros(3))
    assert value.item() == pytest.approx(by_hand(q2d, d2q), rel=1e-5)


def test_equal_weights_are_the_librarys_symmetric_loss() -> None:
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    ours = WeightedSymmetricLoss(None, q2d_weight=0.5, d2q_weight=0.5, scale=SCALE)
    library = MultipleNegativesRankingLoss(None, scale=SCALE, directions=("query_to_doc", "doc_to_query"),
                                           partition_mode="per_direction")
    batch = tiny_batch()
    assert ours.compute_loss_from_embeddings(batch, None).item() == pytest.approx(
        library.compute_loss_from_embeddings(batch, None).item(), rel=1e-6)
    # the two directions really differ (d2q has no mined negatives), so each weight matters
    q2d = WeightedSymmetricLoss(None, q2d_weight=1.0, d2q_weight=0.0, scale=1.0).compute_loss_from_embeddings(batch, None)
    d2q = WeightedSymmetricLoss(None, q2d_weight=0.0, d2q_weight=1.0, scale=1.0).compute_loss_from_embeddings(batch, None)
    assert abs(q2d.item() - d2q.item()) > 0.1


def test_gradients_reach_anchors_positives_and_negatives() -> None:
    batch = [t.clone().requires_grad_(True) for t in tiny_batch()]
    WeightedSymmetricLoss(None, q2d_weight=0.2, d2q_weight=0.8).compute_loss_from_embeddings(batch, None).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in batch)


def test_weights_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'q2d_weight'"):
        load_train_config(None, {"loss": "symmetric", "q2d_weight": 0.0, "d2q_weight": 0.0})
    with pytest.raises(ConfigError, match="'d2q_weight'"):
        load_train_config(None, {"loss": "symmetric", "d2q_weight": -1.0})
    with pytest.raises(ConfigError, match="'loss'"):
        load_train_config(None, {"loss": "symetric"})


def test_a_run_with_the_symmetric_loss_trains(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    import numpy as np
    from pipe_embed.training.train import MODEL_DIR, run_train
    from sentence_transformers import SentenceTransformer

    config = TrainConfig(model=str(tiny_model_path), device="cpu", batch_size=4, max_steps=3, lr=1e-3, eval_steps=0,
                         patience=0, eval_base=False, loss="symmetric", q2d_weight=0.2, d2q_weight=0.8)
    art = run_train(store, config, mine_artifact.ref).artifact
    train = art.metrics["train"]
    assert train["steps"] == 3 and math.isfinite(train["train_loss"]) and train["train_loss"] > 0
    assert (art.config["loss"], art.config["q2d_weight"], art.config["d2q_weight"]) == ("symmetric", 0.2, 0.8)
    assert art.stats["negatives_per_row"] == 3  # mined negatives still go into the q2d direction
    trained = SentenceTransformer(str(art.file(MODEL_DIR)), device="cpu")
    base = SentenceTransformer(str(tiny_model_path), device="cpu")
    assert not np.allclose(trained.encode(["rook"]), base.encode(["rook"]), atol=1e-6)
