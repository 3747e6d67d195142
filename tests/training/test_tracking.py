"""Experiment tracking through the trainer's own integrations: a real MLflow store, wandb offline, lineage."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerCallback

from pipe_embed.pipeline.core.config import build_config
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training import tracking
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.train import MODEL_DIR, run_train
from tests.training.test_train import tiny_config


class KillAfterCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt  # as Ctrl-C right after the first checkpoint


@pytest.fixture()
def mlflow_env(monkeypatch: pytest.MonkeyPatch):
    """mlflow with no tracking URI from outside, and the one this process set forgotten afterwards."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield mlflow
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def _runs(mlflow, store: Store, experiment: str = "pipe"):
    uri, _ = tracking.mlflow_location(store.root)
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return client, client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def test_report_to_names_are_checked() -> None:
    assert tracking.normalize_report_to(["TensorBoard", "mlflow", "mlflow"]) == ["tensorboard", "mlflow"]
    assert tracking.normalize_report_to("none") == []
    assert tracking.normalize_report_to("tensorboard,wandb") == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match="'report_to'.*'comet'"):
        build_config(TrainConfig, {"report_to": "comet"})
    with pytest.raises(ConfigError, match="'none' cannot be combined"):
        build_config(TrainConfig, {"report_to": "none,mlflow"})
    assert build_config(TrainConfig, {"report_to": "none"}).report_to == []


def test_a_missing_tracker_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"mlflow is not installed — run: pip install 'pipe-embed\[mlflow\]'"):
        build_config(TrainConfig, {"report_to": ["mlflow"]})


@pytest.mark.slow
def test_mlflow_run_has_params_step_metrics_and_the_model_path(store: Store, tiny_model_path: Path,
                                                               mine_artifact, mlflow_env) -> None:
    mlflow = mlflow_env
    config = tiny_config(tiny_model_path, epochs=2, report_to=["mlflow"])  # 4 steps per epoch, eval every 2
    with pytest.raises(KeyboardInterrupt):
        run_train(store, config, mine_artifact.ref, callbacks=[KillAfterCheckpoint()])
    client, runs = _runs(mlflow, store)
    assert [r.info.status for r in runs] == ["KILLED"]
    killed_id = runs[0].info.run_id

    outcome = run_train(store, config, mine_artifact.ref)  # resumes the training, and its MLflow run
    art = outcome.artifact
    assert (store.root / ".mlflow" / "mlflow.db").is_file()
    client, runs = _runs(mlflow, store)
    assert len(runs) == 1 and runs[0].info.run_id == killed_id
    run = runs[0]
    assert run.info.status == "FINISHED"
    # params: the trainer's own arguments and pipe's config
    assert float(run.data.params["learning_rate"]) == pytest.approx(1e-3)
    assert run.data.params["pipe.lr"] == "0.001" and run.data.params["pipe.batch_size"] == "4"
    assert run.data.params["pipe.model"] == str(tiny_model_path)
    # per-step metrics, logged by transformers' MLflowCallback
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "loss")})
    assert steps == list(range(1, art.metrics["train"]["steps"] + 1))
    evals = client.get_metric_history(run.info.run_id, "eval_dev_cosine_mrr_10")
    assert {m.step for m in evals} >= {2, 4, 6, 8}
    # the artifact and its model path, recorded once the artifact exists
    tags = run.data.tags
    assert tags["pipe.artifact"] == art.ref and tags["pipe.data"] == mine_artifact.ref
    assert Path(tags["pipe.model_path"]) == art.file(MODEL_DIR).resolve() and Path(tags["pipe.model_path"]).is_dir()
    assert run.data.metrics["final/dev/mrr_10"] == pytest.approx(art.metrics["dev"]["mrr@10"])
    assert {f.path for f in client.list_artifacts(run.info.run_id)} >= {"metrics.json", "README.md"}
    assert json.loads((art.path / "logs" / "tracking.json").read_text())["mlflow"] == killed_id
    assert not any(art.path.glob("logs/tensorboard/*"))  # report_to=mlflow alone: no TensorBoard files

    again = run_train(store, config, mine_artifact.ref)
    assert again.cached and len(_runs(mlflow, store)[1]) == 1  # a cache hit trains nothing and logs nothing


@pytest.mark.slow
def test_a_tracking_uri_from_the_environment_wins(store: Store, tiny_model_path: Path, mine_artifact,
                                                  mlflow_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mlflow = mlflow_env
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # a bare SQLite URI keeps run files in ./mlruns: MLflow's default, the user's choice
    config = tiny_config(tiny_model_path, max_steps=2, eval_base=False, report_to=["mlflow"], experiment="env")
    with tracking.group_run(["mlflow"], store.root, "round", "round 1", experiment="env",
                            tags={"round": 1, "mine": mine_artifact.ref}) as parent:
        art = run_train(store, config, mine_artifact.ref).artifact
    assert not (store.root / ".mlflow").exists() and (tmp_path / "mlruns").is_dir()
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("env")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    train = next(r for name, r in runs.items() if name.startswith("train-"))
    assert train.data.tags["mlflow.parentRunId"] == parent.mlflow_run_id  # nested under the round
    assert train.data.tags["pipe.round"] == "1" and train.data.tags["pipe.mine"] == mine_artifact.ref
    assert train.data.tags["pipe.artifact"] == art.ref
    assert runs["round 1"].info.status == "FINISHED"


def _fake_stages(monkeypatch: pytest.MonkeyPatch, dev_scores: list[float]) -> None:
    """mine/train/eval replaced by fakes whose dev mrr@10 follows `dev_scores` (base first)."""
    scores = iter(dev_scores)
    counter = {"mine": 0, "train": 0}

    def artifact(ref: str, metrics=None):
        return SimpleNamespace(ref=ref, metrics=metrics or {}, stats={}, file=lambda name: Path(f"/m/{ref}/{name}"))

    def run_mine(store, config, source):
        counter["mine"] += 1
        return SimpleNamespace(artifact=artifact(f"mine@m{counter['mine']}"))

    def run_train(store, config, data):
        counter["train"] += 1
        return SimpleNamespace(artifact=artifact(f"train@t{counter['train']}"))

    def run_eval(store, config, model, data_ref):
        value = next(scores) if config.split == "dev" else 0.5
        return SimpleNamespace(artifact=artifact(f"eval@{model}-{config.split}",
                                                 {"model": {"forward": {"mrr@10": value, "recall@1": value}}}))

    from pipe_embed.mining import stage as mining_stage
    from pipe_embed.training import evaluate, train

    monkeypatch.setattr(mining_stage, "run_mine", run_mine)
    monkeypatch.setattr(train, "run_train", run_train)
    monkeypatch.setattr(evaluate, "run_eval", run_eval)


@pytest.mark.slow
def test_iterate_logs_each_round_as_a_nested_run_with_its_lineage(store: Store, tiny_model_path: Path,
                                                                  mlflow_env, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipe_embed.mining.stage import MineConfig
    from pipe_embed.pipeline.orchestrate.iterate import IterateConfig, run_iterate
    from pipe_embed.training.config import EvalConfig
    from tests.training.conftest import make_compose

    mlflow = mlflow_env
    compose = make_compose(store)
    _fake_stages(monkeypatch, [0.50, 0.60, 0.55])
    outcome = run_iterate(store, IterateConfig(rounds=3, model=str(tiny_model_path), refit=False), MineConfig(),
                          TrainConfig(report_to=["mlflow"], experiment="iter"), EvalConfig(), from_ref=compose.ref)
    client, runs = _runs(mlflow, store, "iter")
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {f"iterate {compose.ref}", "round 1", "round 2"}  # round 2 did not improve: stop
    parent = by_name[f"iterate {compose.ref}"]
    assert parent.data.tags["pipe.best_round"] == "1" and parent.data.tags["pipe.best_train"] == "train@t1"
    assert parent.data.metrics["best_dev/mrr_10"] == pytest.approx(0.60)
    for number, mine, train, dev in ((1, "mine@m1", "train@t1", 0.60), (2, "mine@m2", "train@t2", 0.55)):
        run = by_name[f"round {number}"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["pipe.round"] == str(number)
        assert (run.data.tags["pipe.mine"], run.data.tags["pipe.train"]) == (mine, train)
        assert run.data.tags["pipe.improved"] == str(number == 1)
        assert run.data.metrics["dev/mrr_10"] == pytest.approx(dev)
        assert run.info.status == "FINISHED"
    assert by_name["round 2"].data.tags["pipe.start_model"] == str(tiny_model_path)  # from the base model
    assert outcome.artifact.stats["rounds_run"] == 2


def _wandb_logs(folder: Path, count: int, timeout: float = 30.0) -> list[bytes]:
    """The offline runs' record files, once `count` of them are written (wandb's service writes them a
    moment after `finish()` returns)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        files = sorted(folder.glob("offline-run-*/run-*.wandb"))
        data = [f.read_bytes() for f in files]
        if (len(data) >= count and all(len(d) > 100 for d in data)) or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def test_wandb_offline_needs_no_account(store: Store, tiny_model_path: Path, mine_artifact,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    for name in ("WANDB_DISABLED", "WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = tiny_config(tiny_model_path, max_steps=3, eval_base=False, report_to=["wandb", "tensorboard"])
    with tracking.group_run(["wandb"], store.root, "round", "round 1", tags={"round": 1}):
        art = run_train(store, config, mine_artifact.ref).artifact
    logs = _wandb_logs(store.root / ".wandb" / "wandb", 2)
    assert len(logs) == 2  # the training, then the round
    train = next(d for d in logs if b"train/loss" in d)
    for needle in (b"eval/dev_cosine_mrr@10", b"pipe/model_path", str(art.file(MODEL_DIR).resolve()).encode(),
                   art.ref.encode(), b"pipe_lineage"):
        assert needle in train, needle
    assert any(b"round 1" in d and b"train/loss" not in d for d in logs)
    assert any(art.path.glob("logs/tensorboard/events.out.tfevents.*"))
