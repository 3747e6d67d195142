"""KURE's weighted symmetric InfoNCE as a plug-in (the loss itself is in weighted_symmetric.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipe_embed.pipeline.core.config import option
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.training.losses.base import Loss


@dataclass
class SymmetricParams:
    """Settings of the symmetric loss ([train.symmetric])."""

    q2d_weight: float = option(0.5, "Weight of term -> definition (in-batch + mined negatives).")
    d2q_weight: float = option(0.5, "Weight of definition -> term (the batch's terms).")

    def validate(self) -> None:
        for name in ("q2d_weight", "d2q_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"field '{name}': must be >= 0, got {getattr(self, name)}")
        if self.q2d_weight + self.d2q_weight <= 0:
            raise ConfigError("field 'q2d_weight': q2d_weight and d2q_weight are both 0: the loss would be 0",
                              hint="e.g. --q2d-weight 0.2 --d2q-weight 0.8")


def build(model: Any, config: Any, device: str, params: SymmetricParams) -> Any:
    """The weighted sum of both directions' InfoNCE."""
    from pipe_embed.training.losses.weighted_symmetric import WeightedSymmetricLoss

    return WeightedSymmetricLoss(model, q2d_weight=params.q2d_weight, d2q_weight=params.d2q_weight,
                                 scale=1.0 / LOSS.temperature_of(config))


LOSS = Loss("symmetric", "term -> definition and definition -> term InfoNCE, weighted", SymmetricParams,
            build=build)
