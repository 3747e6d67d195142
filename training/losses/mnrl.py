"""MNRL: InfoNCE of each anchor against its positive, the batch's other positives and the mined negatives."""

from __future__ import annotations

from typing import Any

from pipe_embed.training.losses.base import Loss


def build(model: Any, config: Any, device: str, params: None) -> Any:
    """sentence-transformers' MultipleNegativesRankingLoss at scale 1/temperature."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, scale=1.0 / LOSS.temperature_of(config))


LOSS = Loss("mnrl", "in-batch plus mined negatives (InfoNCE)", build=build)
