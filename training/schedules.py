"""Learning-rate schedule arguments for the trainer: the schedule's name, its warmup, its restarts.

transformers builds the scheduler itself (`lr_scheduler_type`); this only maps our fields onto its
arguments. Warmup is `warmup_steps` when set, else `warmup_ratio` of the planned steps (transformers 5
takes both through `warmup_steps`: an int counts steps, a float below 1 is a share).
"""

from __future__ import annotations

from typing import Any

SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "constant_with_warmup")


def schedule_arguments(*, lr_scheduler: str = "linear", warmup_steps: int = 0, warmup_ratio: float = 0.0,
                       lr_cycles: int = 1) -> dict[str, Any]:
    """`lr_scheduler_type`, `warmup_steps` and, for cosine with restarts, `lr_scheduler_kwargs`."""
    args: dict[str, Any] = {"lr_scheduler_type": lr_scheduler,
                            "warmup_steps": int(warmup_steps) if warmup_steps else float(warmup_ratio)}
    if lr_scheduler == "cosine_with_restarts":
        args["lr_scheduler_kwargs"] = {"num_cycles": lr_cycles}
    return args


def warmup_of(steps: int, *, warmup_steps: int = 0, warmup_ratio: float = 0.0) -> int:
    """Warmup steps the trainer will take for a run of `steps` optimizer steps."""
    import math

    return int(warmup_steps) if warmup_steps else math.ceil(steps * warmup_ratio)


__all__ = ["SCHEDULES", "schedule_arguments", "warmup_of"]
