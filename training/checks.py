"""Can this run learn? Checks before training (too few steps, a learning rate stuck at 0), while it
trains (the loss stays finite) and after (the weights are finite and moved at all), so a run that
cannot change the model, or breaks it, says so instead of succeeding.

Mirrors how transformers plans a run: batches per epoch = ceil(rows / batch size) (no-duplicates
sampler, last batch kept), optimizer steps = ceil(batches / accumulation) x epochs unless
max_steps or steps_per_epoch decide, warmup = ceil(steps x warmup_ratio), linear schedule.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pipe_embed.pipeline.core.console import debug
from pipe_embed.training.callbacks import NonFiniteTraining
from pipe_embed.training.config import TrainConfig

MIN_STEPS = 10  # fewer optimizer steps than this barely move a pretrained model
SNAPSHOT_MAX_BYTES = 4 << 30  # keep a CPU copy of the trainable weights up to this size


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run will take, and how many of them warm up."""

    rows: int
    steps: int
    warmup: int

    @property
    def lr_never_moves(self) -> bool:
        """Linear warmup starts at 0: with one step and any warmup, that step is the only one and has LR 0."""
        return self.steps <= 1 and self.warmup >= 1


def plan_steps(config: TrainConfig, rows: int) -> StepPlan:
    """The optimizer steps and warmup steps transformers will plan for `rows` training rows."""
    if config.max_steps:
        steps = config.max_steps
    elif config.steps_per_epoch:
        steps = config.steps_per_epoch * config.epochs
    else:
        batches = math.ceil(rows / config.batch_size)
        per_epoch = max(math.ceil(batches / config.grad_accum_steps), 1)
        steps = math.ceil(config.epochs * per_epoch)
    from pipe_embed.training.schedules import warmup_of

    return StepPlan(rows=rows, steps=steps, warmup=warmup_of(steps, warmup_steps=getattr(config, "warmup_steps", 0),
                                                             warmup_ratio=config.warmup_ratio))


def with_min_steps(config: TrainConfig, rows: int) -> TrainConfig:
    """The config with epochs raised so the run takes at least `min_steps` optimizer steps (whole passes only)."""
    if not config.min_steps or config.max_steps or config.steps_per_epoch or rows <= 0:
        return config
    per_epoch = max(math.ceil(math.ceil(rows / config.batch_size) / config.grad_accum_steps), 1)
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    return config if epochs == config.epochs else dataclasses.replace(config, epochs=epochs)


def plan_warning(config: TrainConfig, plan: StepPlan) -> str | None:
    """One line naming what to change when the plan cannot (or can barely) train; None when it is fine."""
    if config.max_steps:
        how = f"--max-steps {config.max_steps}"
        fix = "raise --max-steps"
    else:
        epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
        accum = f" x {config.grad_accum_steps} accumulation" if config.grad_accum_steps > 1 else ""
        how = f"{plan.rows} rows / batch {config.batch_size}{accum}, {epochs}"
        fix = "lower --batch-size or raise --epochs"
    steps = f"{plan.steps} optimizer step{'s' if plan.steps != 1 else ''}"
    if plan.lr_never_moves:
        return (f"this run cannot learn: {steps} ({how}) and the warmup covers it, so the learning rate stays 0 "
                f"and the model will not change — {fix}, or pass --warmup-ratio 0")
    if plan.steps < MIN_STEPS:
        return (f"only {steps} planned ({how}): too few to move the model much (at least {MIN_STEPS} "
                f"advised) — {fix}")
    return None


class WeightSnapshot:
    """A CPU copy of a model's trainable weights before training, to measure how far training moved them."""

    def __init__(self, model: Any) -> None:
        params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        size = sum(p.numel() * p.element_size() for p in params.values())
        self.weights: dict[str, Any] | None = None
        if size > SNAPSHOT_MAX_BYTES:
            debug(f"{size / 2**30:.1f} GiB of trainable weights: not checking whether training changed them")
            return
        self.weights = {name: p.detach().to("cpu", copy=True) for name, p in params.items()}

    def max_change(self, model: Any) -> float | None:
        """Largest absolute change of any snapshotted weight (0.0: training changed nothing); None: unknown."""
        if self.weights is None:
            return None
        current = dict(model.named_parameters())
        largest = 0.0
        for name, before in self.weights.items():
            after = current.get(name)
            if after is None or after.shape != before.shape:
                return None  # the model was rebuilt: no like-for-like comparison
            delta = (after.detach().to("cpu").float() - before.float()).abs().max().item()
            largest = max(largest, float(delta))
        return largest


def non_finite_weight(model: Any) -> str | None:
    """The name of the first parameter holding a NaN or an infinity, else None."""
    import torch

    for name, param in model.named_parameters():
        if not bool(torch.isfinite(param.detach()).all()):
            return name
    return None


def check_finite_weights(model: Any, config: TrainConfig, step: int) -> None:
    """Refuse to keep a model whose weights went NaN/inf (e.g. after a last step with a huge learning rate)."""
    name = non_finite_weight(model)
    if name is not None:
        raise NonFiniteTraining(f"the weights became non-finite by step {step} ({name})", config)


def check_finite_outputs(model: Any, texts: list[str], config: TrainConfig, step: int) -> None:
    """Refuse a model whose weights are finite but so large that its embeddings overflow to NaN/inf."""
    if not texts:
        return
    import torch

    with torch.no_grad():
        vectors = model.encode(texts, convert_to_tensor=True, show_progress_bar=False)
    if not bool(torch.isfinite(vectors).all()):
        raise NonFiniteTraining(f"the trained model's embeddings are NaN or infinite after step {step} "
                                "(its weights overflowed)", config)


def one_query_noise(metrics: dict[str, Any]) -> float:
    """How far one query can move a mean-over-queries metric (1 / queries); 0.0 when the count is unknown."""
    queries = metrics.get("queries")
    return 1.0 / float(queries) if queries else 0.0


def below_base_warning(dev: dict[str, float] | None, base: dict[str, float] | None, metric: str) -> str | None:
    """The loud line for a trained model below its base model on dev by more than one dev query's worth."""
    if not dev or not base or metric not in dev or metric not in base:
        return None
    noise = one_query_noise(dev) or one_query_noise(base)
    if dev[metric] >= base[metric] - noise:
        return None
    return (f"[bold red]the trained model scores below the base model on dev[/bold red] ({metric} {dev[metric]:.4f} "
            f"vs {base[metric]:.4f}, beyond the noise of one dev query, {noise:.4f}) — the artifact keeps it; "
            "lower --lr, change --epochs/--min-steps, or keep using the base model")


def unchanged_warning(plan: StepPlan) -> str:
    """The loud line for a trained model whose weights equal its base's."""
    why = ("the learning rate was 0 for the only step" if plan.lr_never_moves
           else "no optimizer step moved any weight")
    return (f"[bold red]the trained model is identical to the base model[/bold red] (max weight change 0: {why}) "
            "— lower --batch-size, raise --epochs or --lr, or pass --warmup-ratio 0")


__all__ = ["MIN_STEPS", "StepPlan", "WeightSnapshot", "below_base_warning", "check_finite_outputs",
           "check_finite_weights", "non_finite_weight", "one_query_noise", "plan_steps", "plan_warning",
           "unchanged_warning", "with_min_steps"]
