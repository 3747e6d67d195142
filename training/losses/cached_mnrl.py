"""Cached MNRL (GradCache): MNRL over a big batch, encoded in small mini-batches to bound memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipe_embed.pipeline.core.config import option
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.training.losses.base import Loss


@dataclass
class CachedMnrlParams:
    """Settings of the cached-mnrl loss ([train.cached-mnrl])."""

    mini_batch_size: int = option(16, "GradCache mini-batch size (bounds memory; the batch is still --batch-size).")

    def validate(self) -> None:
        if self.mini_batch_size < 1:
            raise ConfigError(f"field 'mini_batch_size': must be >= 1, got {self.mini_batch_size}")


def build(model: Any, config: Any, device: str, params: CachedMnrlParams) -> Any:
    """sentence-transformers' CachedMultipleNegativesRankingLoss."""
    from sentence_transformers.sentence_transformer.losses import CachedMultipleNegativesRankingLoss

    return CachedMultipleNegativesRankingLoss(model, scale=1.0 / LOSS.temperature_of(config),
                                              mini_batch_size=params.mini_batch_size)


LOSS = Loss("cached-mnrl", "MNRL with GradCache: big batches in small memory", CachedMnrlParams, build=build)
