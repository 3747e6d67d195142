"""The training progress bar: steps, loss and dev MRR@10 on a terminal; plain lines off one; nothing with -q."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console
from transformers import TrainerControl, TrainerState

from pipe_embed.pipeline.core.console import set_verbosity
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training import callbacks
from pipe_embed.training.callbacks import ProgressCallback
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.train import run_train


@pytest.fixture(autouse=True)
def _normal_verbosity():
    set_verbosity(0)
    yield
    set_verbosity(0)


def fake_console(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> io.StringIO:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=160, highlight=False)
    monkeypatch.setattr(callbacks, "console", console)
    monkeypatch.setattr("pipe_embed.pipeline.core.console.console", console)  # info() lines
    return out


def drive(bar: ProgressCallback, steps: int = 4, eval_at: int = 2) -> str:
    """The trainer's callback events for a short run with one dev evaluation; the status while it runs."""
    state, control = TrainerState(max_steps=steps), TrainerControl()
    bar.on_train_begin(None, state, control)
    for step in range(1, steps + 1):
        state.global_step = step
        bar.on_log(None, state, control, logs={"loss": 1.0 / step, "learning_rate": 1e-3})
        control.should_evaluate = step == eval_at
        bar.on_step_end(None, state, control)
        if step == eval_at:
            during = bar.status()
            bar.on_evaluate(None, state, control, metrics={"eval_dev_cosine_mrr@10": 0.625,
                                                            "eval_dev_cosine_ndcg@10": 0.7})
    bar.on_train_end(None, state, control)
    return during


def test_on_a_terminal_the_bar_shows_steps_loss_and_dev_mrr(monkeypatch: pytest.MonkeyPatch) -> None:
    out = fake_console(monkeypatch, terminal=True)
    during = drive(ProgressCallback("train", metric="mrr@10"))
    text = out.getvalue()
    assert "train" in text and "4/4" in text
    assert "loss 0.2500" in text and "dev mrr@10 0.6250" in text  # the last state stays on screen
    assert during == "loss 0.5000 · evaluating dev…"


def test_off_a_terminal_each_evaluation_prints_one_plain_line(monkeypatch: pytest.MonkeyPatch) -> None:
    out = fake_console(monkeypatch, terminal=False)
    drive(ProgressCallback("train"))
    assert out.getvalue().splitlines() == ["train step 2/4: loss 0.5000 · dev mrr@10 0.6250"]


def test_off_a_terminal_a_long_run_says_how_long_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """No dev evaluation for a while must not mean silence: a line with the time left every `every_s`."""
    out = fake_console(monkeypatch, terminal=False)
    now = [100.0]
    bar = ProgressCallback("train", every_s=60, clock=lambda: now[0])
    state, control = TrainerState(max_steps=10), TrainerControl()
    bar.on_train_begin(None, state, control)
    for step in range(1, 11):
        now[0] += 30  # 30 s a step: a line every other step
        state.global_step = step
        bar.on_log(None, state, control, logs={"loss": 0.5})
        bar.on_step_end(None, state, control)
    lines = out.getvalue().splitlines()
    assert lines[0] == "train step 2/10: 1m00s elapsed, about 4m00s left · loss 0.5000"
    assert len(lines) == 5 and lines[-1].startswith("train step 10/10: 5m00s elapsed, about 0s left")


def test_quiet_shows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    set_verbosity(-1)
    for terminal in (True, False):
        out = fake_console(monkeypatch, terminal=terminal)
        drive(ProgressCallback("train"))
        assert out.getvalue() == ""


def test_a_real_run_drives_the_bar(store: Store, tiny_model_path: Path, mine_artifact,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = fake_console(monkeypatch, terminal=True)
    config = TrainConfig(model=str(tiny_model_path), batch_size=4, max_steps=3, eval_steps=2, lr=1e-3,
                         device="cpu", patience=0, eval_base=False, warmup_ratio=0.0)
    run_train(store, config, mine_artifact.ref)
    text = out.getvalue()
    assert "3/3" in text and "loss " in text and "dev mrr@10 " in text
