"""A run that cannot learn says so: too few steps, a learning rate stuck at 0, weights that never moved."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipe_embed.pipeline.core.console import set_verbosity
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.checks import (
    MIN_STEPS,
    WeightSnapshot,
    plan_steps,
    plan_warning,
)
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.train import run_train


@pytest.fixture(autouse=True)
def _normal_verbosity():
    set_verbosity(0)
    yield
    set_verbosity(0)


def test_issue_13_one_step_at_batch_32_with_warmup_never_leaves_lr_0() -> None:
    config = TrainConfig(batch_size=32)  # batch 32, 1 epoch, 10% warmup (the earlier defaults)
    plan = plan_steps(config, 29)  # a 40-row glossary composed with defaults: 29 train anchors
    assert (plan.steps, plan.warmup, plan.lr_never_moves) == (1, 1, True)
    line = plan_warning(config, plan)
    assert "cannot learn" in line and "learning rate stays 0" in line
    assert "--batch-size" in line and "--epochs" in line and "--warmup-ratio 0" in line
    assert "\n" not in line


@pytest.mark.parametrize(("values", "rows", "steps", "says"), [
    ({"batch_size": 8}, 29, 4, "only 4 optimizer steps"),
    ({"batch_size": 8, "grad_accum_steps": 2}, 29, 2, "x 2 accumulation"),
    ({"max_steps": 3}, 1000, 3, "raise --max-steps"),
    ({"steps_per_epoch": 2, "epochs": 3}, 1000, 6, "only 6 optimizer steps"),
    ({"batch_size": 32, "warmup_ratio": 0.0}, 29, 1, "only 1 optimizer step "),
])
def test_too_few_steps_warn_with_what_to_change(values: dict, rows: int, steps: int, says: str) -> None:
    config = TrainConfig(**values)
    plan = plan_steps(config, rows)
    assert plan.steps == steps and not plan.lr_never_moves
    line = plan_warning(config, plan)
    assert line is not None and says in line and "cannot learn" not in line


def test_enough_steps_say_nothing() -> None:
    config = TrainConfig(batch_size=2, epochs=1)
    plan = plan_steps(config, 2 * MIN_STEPS)
    assert plan.steps == MIN_STEPS and plan_warning(config, plan) is None


def tiny(model: Path, **overrides) -> TrainConfig:
    values = dict(model=str(model), batch_size=32, epochs=1, min_steps=0, lr=1e-3, device="cpu", patience=0, seed=7,
                  eval_steps=0, eval_base=False)
    values.update(overrides)
    return TrainConfig(**values)


def test_a_run_that_cannot_learn_is_refused_before_the_model_loads(
        store: Store, tiny_model_path: Path, mine_artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipe_embed.pipeline.core.errors import PipeError
    from pipe_embed.training import train as train_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(train_module, "prepare_model", no_model)
    # 13 train rows at batch 32: one step, and 10% warmup makes its learning rate 0
    with pytest.raises(PipeError, match="this run cannot learn.*--warmup-ratio 0"):
        run_train(store, tiny(tiny_model_path), mine_artifact.ref)
    assert store.versions("train") == [] and not list(store.stage_dir("train").glob(".work-*"))


def test_weights_that_never_moved_are_said_loudly(tiny_model_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sentence_transformers import SentenceTransformer

    from pipe_embed.training.checks import StepPlan
    from pipe_embed.training.train import check_learned

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    assert check_learned(WeightSnapshot(model), model, StepPlan(rows=13, steps=3, warmup=0)) == 0.0
    assert "identical to the base model" in capsys.readouterr().err


def test_the_same_run_without_warmup_learns_and_says_only_that_it_is_short(
        store: Store, tiny_model_path: Path, mine_artifact, capsys: pytest.CaptureFixture) -> None:
    art = run_train(store, tiny(tiny_model_path, warmup_ratio=0.0), mine_artifact.ref).artifact
    err = capsys.readouterr().err
    assert "only 1 optimizer step " in err and "cannot learn" not in err
    assert "identical to the base model" not in err
    assert art.stats["weights_changed"] is True and art.stats["max_weight_change"] > 0


def test_a_dev_split_too_small_to_measure_is_called_noise(store: Store, tiny_model_path: Path, mine_artifact,
                                                          capsys: pytest.CaptureFixture) -> None:
    run_train(store, tiny(tiny_model_path, batch_size=4, max_steps=1, warmup_ratio=0.0), mine_artifact.ref)
    lines = [line for line in capsys.readouterr().err.splitlines() if "dev split has only" in line]
    assert len(lines) == 1
    assert "2 queries" in lines[0] and "noise" in lines[0] and "--dev-fraction" in lines[0]


def test_quiet_hides_the_warnings(store: Store, tiny_model_path: Path, mine_artifact,
                                  capsys: pytest.CaptureFixture) -> None:
    set_verbosity(-1)
    art = run_train(store, tiny(tiny_model_path, warmup_ratio=0.0), mine_artifact.ref).artifact  # "only 1 step"
    assert capsys.readouterr().err == "" and art.stats["weights_changed"] is True


def test_weight_snapshot_measures_the_largest_change(tiny_model_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    snapshot = WeightSnapshot(model)
    assert snapshot.max_change(model) == 0.0
    with torch.no_grad():
        next(model.parameters())[0, 0] += 0.25
    assert snapshot.max_change(model) == pytest.approx(0.25, abs=1e-6)


@pytest.mark.parametrize(("values", "rows", "epochs"), [
    ({"min_steps": 100, "batch_size": 16, "epochs": 3}, 127, 13),  # 8 batches per epoch: 13 passes for 104 steps
    ({"min_steps": 100, "batch_size": 16, "epochs": 3}, 2000, 3),  # 375 steps already: unchanged
    ({"min_steps": 100, "batch_size": 16, "grad_accum_steps": 2, "epochs": 1}, 127, 25),
    ({"min_steps": 100, "max_steps": 5}, 127, 1),  # max_steps wins
    ({"min_steps": 0, "epochs": 2}, 10, 2),  # off
])
def test_min_steps_raises_whole_epochs_to_reach_the_budget(values: dict, rows: int, epochs: int) -> None:
    from pipe_embed.training.checks import with_min_steps

    config = with_min_steps(TrainConfig(**values), rows)
    assert config.epochs == epochs
    if not values.get("max_steps"):
        assert plan_steps(config, rows).steps >= min(values["min_steps"], plan_steps(config, rows).steps)
        if values["min_steps"]:
            assert plan_steps(config, rows).steps >= values["min_steps"]


def test_min_steps_is_checked_and_a_flag() -> None:
    from pipe_embed.pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="min_steps"):
        TrainConfig(min_steps=-1).validate()


def test_a_small_run_trains_min_steps_and_says_why(store: Store, tiny_model_path: Path, mine_artifact,
                                                    capsys: pytest.CaptureFixture) -> None:
    art = run_train(store, tiny(tiny_model_path, batch_size=8, min_steps=6), mine_artifact.ref).artifact
    assert "3 epochs instead of 1" in capsys.readouterr().err  # 13 rows / 8 = 2 steps per epoch
    assert art.metrics["train"]["steps"] == 6 and art.config["epochs"] == 1  # the version keeps what was asked


def test_a_trained_model_below_its_base_beyond_noise_is_said_loudly() -> None:
    from pipe_embed.training.checks import below_base_warning

    base = {"mrr@10": 0.50, "queries": 20}  # one query of 20: noise 0.05
    assert below_base_warning({"mrr@10": 0.46, "queries": 20}, base, "mrr@10") is None  # within noise
    line = below_base_warning({"mrr@10": 0.40, "queries": 20}, base, "mrr@10")
    assert line is not None and "below the base model" in line and "0.4000 vs 0.5000" in line and "\n" not in line
    assert below_base_warning({"mrr@10": 0.40}, None, "mrr@10") is None  # no base scored: nothing to say


def test_a_loss_or_model_gone_non_finite_fails_naming_the_learning_rate(tiny_model_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerState

    from pipe_embed.training.callbacks import FiniteLossCallback, NonFiniteTraining
    from pipe_embed.training.checks import check_finite_outputs, check_finite_weights

    config = TrainConfig(lr=3.0)
    state = TrainerState()
    state.global_step = 3
    FiniteLossCallback(config).on_log(None, state, None, logs={"loss": 1.5})  # finite: nothing happens
    with pytest.raises(NonFiniteTraining, match=r"^the loss became NaN at step 3 — lower --lr \(it is 3\)$"):
        FiniteLossCallback(config).on_log(None, state, None, logs={"loss": float("nan")})
    with pytest.raises(NonFiniteTraining, match="became inf .* or train with --precision bf16 or f32"):
        FiniteLossCallback(TrainConfig(lr=3.0, precision="fp16")).on_log(None, state, None, logs={"loss": float("inf")})

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    check_finite_weights(model, config, 3)
    check_finite_outputs(model, ["rook", "a chess piece"], config, 3)
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(1e30)  # finite weights whose activations overflow
    with pytest.raises(NonFiniteTraining, match="embeddings are NaN or infinite after step 3"):
        check_finite_outputs(model, ["rook", "a chess piece"], config, 3)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(NonFiniteTraining, match=r"weights became non-finite by step 3 \(.*\) — lower --lr"):
        check_finite_weights(model, config, 3)
