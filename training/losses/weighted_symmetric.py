"""KURE's weighted symmetric InfoNCE: term -> definition and definition -> term, each with its own weight.

sentence-transformers already has both directions (`MultipleNegativesRankingLoss(directions=
("query_to_doc", "doc_to_query"), partition_mode="per_direction")`, which replaced
MultipleNegativesSymmetricRankingLoss), but it averages them with equal weights. KURE weights them
(e.g. 0.2 q2d + 0.8 d2q), so the loss here runs that same library loss once per direction and sums:

    loss = q2d_weight * InfoNCE(anchor -> positives + mined negatives of the batch)
         + d2q_weight * InfoNCE(positive -> anchors of the batch)

With weights 0.5/0.5 it equals the library's symmetric loss exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesRankingLoss,
)
from torch import Tensor


class WeightedSymmetricLoss(MultipleNegativesRankingLoss):
    """`q2d_weight` x InfoNCE(anchor -> docs, in-batch + mined) + `d2q_weight` x InfoNCE(positive -> anchors)."""

    def __init__(self, model: Any, *, q2d_weight: float = 0.5, d2q_weight: float = 0.5, scale: float = 20.0,
                 **kwargs: Any) -> None:
        super().__init__(model, scale=scale, **kwargs)  # directions=("query_to_doc",): one direction per call
        if q2d_weight < 0 or d2q_weight < 0 or q2d_weight + d2q_weight <= 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got q2d {q2d_weight}, d2q {d2q_weight}")
        self.q2d_weight = q2d_weight
        self.d2q_weight = d2q_weight

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """Both directions from one set of embeddings: columns anchor, positive, negative_1..k."""
        loss = torch.zeros((), device=embeddings[0].device)
        if self.q2d_weight:
            loss = loss + self.q2d_weight * super().compute_loss_from_embeddings(embeddings, labels)
        if self.d2q_weight:
            # Each positive is the query, every anchor of the batch a candidate (its own anchor the answer);
            # the similarity is symmetric, so this is the library's doc_to_query term on its own.
            reverse = [embeddings[1], embeddings[0]]
            loss = loss + self.d2q_weight * super().compute_loss_from_embeddings(reverse, labels)
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "q2d_weight": self.q2d_weight, "d2q_weight": self.d2q_weight}


def symmetric_loss(model: Any, *, q2d_weight: float, d2q_weight: float, temperature: float | None) -> Any:
    """The weighted symmetric loss at `temperature` (unset: 0.05, as MNRL)."""
    return WeightedSymmetricLoss(model, q2d_weight=q2d_weight, d2q_weight=d2q_weight,
                                 scale=1.0 / (temperature or 0.05))


__all__ = ["WeightedSymmetricLoss", "symmetric_loss"]
