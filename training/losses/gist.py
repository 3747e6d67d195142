"""GIST: MNRL whose in-batch negatives a frozen guide model judges too close to the positive are masked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipe_embed.pipeline.core.config import option
from pipe_embed.training.losses.base import Loss


@dataclass
class GistParams:
    """Settings of the gist loss ([train.gist])."""

    guide_model: str | None = option(None, "The guide model: hub id, directory or train@… ref "
                                           "(unset: the base model, frozen).")


def build(model: Any, config: Any, device: str, params: GistParams) -> Any:
    """sentence-transformers' GISTEmbedLoss with the guide model loaded frozen."""
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    from pipe_embed.pipeline.core.models import load_model

    guide = load_model(params.guide_model or config.model, device=device, trust_remote_code=config.trust_remote_code)
    guide.eval()
    for param in guide.parameters():
        param.requires_grad_(False)
    return GISTEmbedLoss(model, guide, temperature=LOSS.temperature_of(config))


LOSS = Loss("gist", "MNRL with a guide model that masks false in-batch negatives (one mined negative per row)",
            GistParams, build=build, max_negatives=1, temperature=0.01, model_fields=("guide_model",))
