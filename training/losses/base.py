"""What a loss plug-in declares: its settings, the data columns it reads, and how it is built.

An entry module stays light (no sentence-transformers import at module level): the CLI loads every
entry to draw its `--help` panels, and the library is only needed once a loss is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipe_embed.pipeline.core.plugins import Plugin

# (model, the TrainConfig, device, the entry's settings or None) -> the loss module the trainer calls.
# The config is typed Any: training.config imports this registry, so this module cannot import it back.
BuildLoss = Callable[[Any, Any, str, Any], Any]


@dataclass(frozen=True, kw_only=True)
class Loss(Plugin):
    """A training loss: `build` makes it; the flags say which columns of the training rows it needs."""

    build: BuildLoss
    needs_negatives: bool = True  # reads the mined negatives (negative_1..k); False: anchor and positive only
    max_negatives: int = 0  # takes at most this many mined negatives per row (0: any number)
    needs_scores: bool = False  # reads a `label` column of [positive_score, negative_score_1..k] per row
    temperature: float = 0.05  # the softmax temperature when --temperature is unset
    model_fields: tuple[str, ...] = ()  # settings that name a model it loads (refs resolved, weights versioned)

    def temperature_of(self, config: Any) -> float:
        """The run's temperature: --temperature, else this loss's own default."""
        return config.temperature or self.temperature


__all__ = ["BuildLoss", "Loss"]
