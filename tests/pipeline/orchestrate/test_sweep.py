"""`pipe sweep`: Optuna trials as train artifacts, pruning with replay, the table, plot and best config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipe_embed.pipeline.cli import app
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.pipeline.orchestrate.sweep import BEST_CONFIG, SweepConfig, parse_dimension, read_trials, search_space
from pipe_embed.training.callbacks import STOPPED_FILE, EvalReportCallback, RunStopped
from pipe_embed.training.config import load_train_config
from pipe_embed.training.train import run_train
from tests.training.conftest import make_compose, make_mine
from tests.training.test_train import tiny_config


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def mine_artifact(store: Store):
    return make_mine(store, make_compose(store))


@pytest.fixture()
def loss_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the training steps' loss computations in this process (0 = nothing trained)."""
    from sentence_transformers import SentenceTransformerTrainer

    owner = next(c for c in SentenceTransformerTrainer.__mro__ if "compute_loss" in c.__dict__)
    real = owner.compute_loss
    calls: list[int] = []

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, "compute_loss", counted)
    return calls


def test_search_space_from_ranges_choices_and_fixed_values() -> None:
    lr = parse_dimension("lr", "5e-7..1e-4")
    assert (lr.kind, lr.low, lr.high) == ("log", 5e-7, 1e-4)
    assert parse_dimension("batch_size", "32..256").choices == (32, 64, 128, 256)
    assert parse_dimension("batch_size", "24..100").choices == (24, 32, 64, 100)
    assert parse_dimension("batch_size", "16, 48").choices == (16, 48)
    epochs = parse_dimension("epochs", "1..3")
    assert (epochs.kind, epochs.low, epochs.high) == ("int", 1, 3)
    assert parse_dimension("temperature", "0.05").kind == "fixed" and parse_dimension("epochs", "") is None
    names = [d.name for d in search_space(SweepConfig(epochs="2..4", temperature=""))]
    assert names == ["lr", "batch_size", "epochs"]
    for name, text, message in (("lr", "1e-4..1e-6", "runs backwards"), ("lr", "fast", "not a number"),
                                ("batch_size", "2.5", "whole number"), ("temperature", "0..1", "> 0")):
        with pytest.raises(ConfigError, match=f"'{name}'.*{message}"):
            parse_dimension(name, text)
    with pytest.raises(ConfigError, match="'trials'"):
        SweepConfig(trials=0).validate()
    with pytest.raises(ConfigError, match="nothing to search"):
        SweepConfig(lr="1e-4", batch_size="32", temperature="", epochs="").validate()


def test_a_stopped_training_replays_its_values_instead_of_training_again(store: Store, tiny_model_path: Path,
                                                                         mine_artifact, loss_calls) -> None:
    config = tiny_config(tiny_model_path, max_steps=4, eval_steps=1, eval_base=False)
    seen: list[tuple[int, float]] = []

    def stop_at_two(step: int, value: float) -> bool:
        seen.append((step, value))
        return step >= 2

    with pytest.raises(RunStopped) as stopped:
        run_train(store, config, mine_artifact.ref, callbacks=[EvalReportCallback(stop_at_two)])
    assert stopped.value.step == 2 and [s for s, _ in seen] == [1, 2] and len(loss_calls) == 2
    work = next(store.stage_dir("train").glob(".work-*"))
    marker = json.loads((work / "checkpoints" / STOPPED_FILE).read_text())
    assert marker["stopped_at"] == 2 and [s for s, _ in marker["history"]] == [1, 2]
    assert not list((work / "checkpoints").glob("checkpoint-*"))  # a stopped run keeps no checkpoints
    assert store.versions("train") == []

    again = EvalReportCallback(stop_at_two)
    seen.clear()
    with pytest.raises(RunStopped):
        run_train(store, config, mine_artifact.ref, callbacks=[again])
    assert again.replayed and seen == [tuple(v) for v in marker["history"]] and len(loss_calls) == 2  # no step

    goes_on = EvalReportCallback(lambda step, value: False)
    art = run_train(store, config, mine_artifact.ref, callbacks=[goes_on]).artifact
    assert art.metrics["train"]["steps"] == 4 and len(loss_calls) == 6  # trained from the start
    assert [s for s, _ in goes_on.history] == [1, 2, 1, 2, 3, 4]  # the replayed values, then the real ones


@pytest.mark.slow
def test_sweep_trials_table_plot_best_config_and_cache_hits(store: Store, tiny_model_path: Path, mine_artifact,
                                                           loss_calls) -> None:
    runner = CliRunner()
    args = ["sweep", "--data-dir", str(store.root), "--from", mine_artifact.ref, "--trials", "3",
            "--lr", "1e-4..1e-2", "--batch-size", "2,4", "--temperature", "0.05..0.2", "--startup-trials", "1",
            "--model", str(tiny_model_path), "--max-steps", "4", "--eval-steps", "1", "--device", "cpu",
            "--patience", "0", "--no-eval-base", "--seed", "7"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    sweep = store.resolve(result.stdout.strip().splitlines()[-1])
    assert sweep.stage == "sweep" and "trials" in result.output and "best: trial" in result.output
    trained = len(loss_calls)
    assert trained > 0

    trials = read_trials(sweep)
    assert [t["number"] for t in trials] == [0, 1, 2] and {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert complete and trials[0]["state"] == "COMPLETE"  # pruning starts after the first trial
    for t in trials:
        assert 1e-4 <= t["params"]["lr"] <= 1e-2 and t["params"]["batch_size"] in (2, 4)
        assert 0.05 <= t["params"]["temperature"] <= 0.2 and t["history"]  # a dev value at every evaluation
        if t["state"] == "COMPLETE":
            art = store.resolve(t["train"])
            assert art.config["lr"] == t["params"]["lr"] and art.config["temperature"] == t["params"]["temperature"]
            assert t["value"] == pytest.approx(art.metrics["train"]["best_dev_metric"])
        else:
            assert t["train"] is None and t["pruned_at_step"] == t["history"][-1][0]
    best = max(complete, key=lambda t: t["value"])
    assert sweep.metrics["best_trial"] == best["number"] and sweep.metrics["best_train"] == best["train"]
    rows = list(csv.DictReader(sweep.file("trials.csv").open()))
    assert [r["state"] for r in rows] == [t["state"] for t in trials] and {"lr", "batch_size", "value"} <= set(rows[0])
    assert sweep.file("trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the best config is a train config file: training with it finds the best trial's artifact
    best_config = load_train_config(sweep.file(BEST_CONFIG))
    assert best_config.lr == best["params"]["lr"] and best_config.batch_size == best["params"]["batch_size"]
    again = run_train(store, best_config, mine_artifact.ref)
    assert again.cached and again.artifact.ref == best["train"]

    # the same sweep again is a cache hit; forced, it re-runs the study and every trial is a cache hit
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "up to date" in result.output
    result = runner.invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert len(loss_calls) == trained  # nothing trained
    rerun = read_trials(store.resolve(result.stdout.strip().splitlines()[-1]))
    assert all(t["cached"] for t in rerun)
    def outcome(records):
        return [(t["state"], t["value"], t["params"]) for t in records]

    assert outcome(rerun) == outcome(trials)


def test_the_best_config_keeps_the_chosen_losss_table(tmp_path: Path) -> None:
    from pipe_embed.pipeline.orchestrate.sweep import best_config_toml

    config = load_train_config(None, {"loss": "gist", "gist": {"guide_model": "guide/model"}, "temperature": 0.02})
    text = best_config_toml(config, ["best"])
    assert "[train.gist]\nguide_model = \"guide/model\"" in text and "[train.symmetric]" not in text
    path = tmp_path / BEST_CONFIG
    path.write_text(text)
    assert load_train_config(path).resolved() == config.resolved()  # the same run: a cache hit
