"""Learning-rate schedules and warmup reach the trainer: the LR it sets at given steps, and in a real run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.callbacks import STEP_LOG, read_log
from pipe_embed.training.config import TrainConfig, load_train_config
from pipe_embed.training.data import build_rows
from pipe_embed.training.train import (
    build_trainer,
    open_run_dir,
    prepare_model,
    run_train,
)
from tests.training.conftest import split_rows

LR = 1e-3
STEPS = 20


def expected_lr(schedule: str, step: int, warmup: int, total: int, cycles: int = 1) -> float:
    """The schedules as their papers define them, written out by hand."""
    if step < warmup:
        return LR * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return LR * max(0.0, (total - step) / (total - warmup))
    if schedule == "cosine":
        return LR * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "cosine_with_restarts":
        return LR * 0.5 * (1 + math.cos(math.pi * ((cycles * progress) % 1.0))) if progress < 1 else 0.0
    assert schedule == "constant_with_warmup"
    return LR


def trainer_lrs(tmp_path: Path, tiny_model_path: Path, **overrides) -> list[float]:
    """The learning rate the real trainer's scheduler gives at steps 0..STEPS."""
    config = TrainConfig(model=str(tiny_model_path), device="cpu", lr=LR, batch_size=4, max_steps=STEPS,
                         eval_base=False, **overrides)
    config.validate()
    model = prepare_model(config, "cpu")
    rows = build_rows(split_rows()["train"])
    trainer = build_trainer(config, model, rows, None, open_run_dir(tmp_path / "run"), "cpu", [])
    trainer.create_optimizer_and_scheduler(num_training_steps=STEPS)
    lrs = []
    for _ in range(STEPS + 1):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return lrs


@pytest.mark.parametrize("schedule,extra,warmup", [
    ("linear", {"warmup_ratio": 0.1}, 2),                 # ratio: ceil(20 x 0.1)
    ("cosine", {"warmup_steps": 5, "warmup_ratio": 0.5}, 5),  # steps win over the ratio
    ("cosine_with_restarts", {"warmup_steps": 4, "lr_cycles": 2}, 4),
    ("constant_with_warmup", {"warmup_steps": 3}, 3),
])
def test_the_trainer_uses_the_schedule_and_warmup(tmp_path: Path, tiny_model_path: Path, schedule: str,
                                                  extra: dict, warmup: int) -> None:
    lrs = trainer_lrs(tmp_path, tiny_model_path, lr_scheduler=schedule, **extra)
    cycles = extra.get("lr_cycles", 1)
    for step in (0, 1, warmup - 1, warmup, warmup + 3, 11, 14, 17, STEPS - 1, STEPS):
        assert lrs[step] == pytest.approx(expected_lr(schedule, step, warmup, STEPS, cycles), abs=1e-9), (step, lrs)
    if schedule == "cosine_with_restarts":  # the restart: back to the peak half-way through the decay
        restart = warmup + (STEPS - warmup) // 2
        assert lrs[restart - 1] < 0.05 * LR and lrs[restart] == pytest.approx(LR)


def test_a_run_logs_the_scheduled_learning_rate(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    config = TrainConfig(model=str(tiny_model_path), device="cpu", lr=LR, batch_size=4, max_steps=8, eval_steps=0,
                         patience=0, eval_base=False, lr_scheduler="cosine", warmup_steps=2, warmup_ratio=0.5)
    art = run_train(store, config, mine_artifact.ref).artifact
    logged = {e["step"]: e["lr"] for e in read_log(art.file("logs") / STEP_LOG) if e.get("kind") == "train"}
    assert sorted(logged) == list(range(1, 9))
    # the LR logged at step s is the one step s trained with: warmup 2 steps, then a cosine to 0 at step 8
    for step, lr in logged.items():
        assert lr == pytest.approx(expected_lr("cosine", step - 1, 2, 8), abs=1e-9), (step, logged)
    assert art.config["lr_scheduler"] == "cosine" and art.config["warmup_steps"] == 2


def test_schedule_fields_are_checked_and_read_from_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'lr_scheduler'"):
        load_train_config(None, {"lr_scheduler": "exponential"})
    with pytest.raises(ConfigError, match="'warmup_steps'"):
        load_train_config(None, {"warmup_steps": -1})
    with pytest.raises(ConfigError, match="'lr_cycles'"):
        load_train_config(None, {"lr_cycles": 0})
    path = tmp_path / "pipe.toml"
    path.write_text('[train]\nlr_scheduler = "cosine_with_restarts"\nwarmup_steps = 100\nlr_cycles = 3\n')
    cfg = load_train_config(path)
    assert (cfg.lr_scheduler, cfg.warmup_steps, cfg.lr_cycles) == ("cosine_with_restarts", 100, 3)
