"""Training losses as plug-ins: one module per loss, one registry line each (see base.Loss).

A loss is chosen with `--loss NAME`; its own settings are flags in its `--help` panel and keys in
its `[train.NAME]` table. Adding one is a module declaring a `Loss` plus a line in LOSSES (or
`LOSSES.register(...)` from user code).
"""

from __future__ import annotations

from typing import Any

from pipe_embed.pipeline.core.plugins import Registry
from pipe_embed.training.losses.base import Loss

LOSSES: Registry[Loss] = Registry("loss", "loss", {
    "mnrl": "pipe_embed.training.losses.mnrl:LOSS",
    "cached-mnrl": "pipe_embed.training.losses.cached_mnrl:LOSS",
    "gist": "pipe_embed.training.losses.gist:LOSS",
    "symmetric": "pipe_embed.training.losses.symmetric:LOSS",
})


def __getattr__(name: str) -> Any:
    """The symmetric loss's classes, imported on use (they import sentence-transformers)."""
    if name in ("WeightedSymmetricLoss", "symmetric_loss"):
        from pipe_embed.training.losses import weighted_symmetric

        return getattr(weighted_symmetric, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LOSSES", "Loss", "WeightedSymmetricLoss", "symmetric_loss"]
