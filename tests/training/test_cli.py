"""`pipe train` and `pipe eval` through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipe_embed.pipeline.cli import app
from pipe_embed.pipeline.core.store import Store

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_train_then_eval_compare(store: Store, tiny_model_path: Path, mine_artifact, compose_artifact) -> None:
    data = store.root
    result = invoke("train", "--data-dir", data, "--model", tiny_model_path, "--max-steps", "2",
                    "--batch-size", "4", "--device", "cpu", "--eval-steps", "1", "--patience", "1", "--lr", "1e-3")
    assert result.exit_code == 0, result.output
    train_ref = result.stdout.strip().splitlines()[-1]
    assert train_ref.startswith("train@")
    art = store.resolve(train_ref)
    assert art.inputs == [{"stage": "mine", "version": mine_artifact.version}]  # --from defaults to mine@latest

    result = invoke("eval", "--data-dir", data, "--model", "train@latest", "--compare", "--split", "dev",
                    "--reverse", "--device", "cpu")
    assert result.exit_code == 0, result.output
    for text in ("mrr@10", "ndcg@10", "recall@1", "base", "trained", "Δ"):
        assert text in result.stdout
    evaluation = store.resolve(result.stdout.strip().splitlines()[-1])
    assert set(evaluation.metrics) == {"model", "base"}
    assert {i["stage"] for i in evaluation.inputs} == {"train", "mine"}


def test_seed_config_json_trains(store: Store, tiny_model_path: Path, compose_artifact, tmp_path: Path) -> None:
    seed = {
        "model_id": str(tiny_model_path),
        "hf": {"trust_remote_code": False, "local_files_only": True},
        "device": {"device": "cpu", "dtype": "auto"},
        "train": {"batch_size": 4, "epochs": 1, "max_length": 32, "grad_accum_steps": 1, "fp16": False,
                  "steps_per_epoch": 2},
        "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.0, "warmup_ratio": 0.0},
        "data": {"pairs_path": str(compose_artifact.file("pairs.jsonl")), "stream": False},
        "output": {"save_dir": str(tmp_path / "out"), "save_name": "seed-model", "save_metrics": True},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(seed))
    result = invoke("train", "--data-dir", store.root, "--config", path)
    assert result.exit_code == 0, result.output
    art = store.resolve("train@latest")
    assert art.metrics["train"]["steps"] == 2 and art.config["max_length"] == 32
    assert (tmp_path / "out" / "seed-model" / "model.safetensors").is_file()


def test_bad_config_names_the_field(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_id": "x", "train": {"batch_size": "many", "fp16": False}}))
    result = invoke("train", "--data-dir", store.root, "--config", path)
    assert result.exit_code == 2
    assert "train.batch_size" in result.output and "Traceback" not in result.output
    result = invoke("train", "--data-dir", store.root, "--loss", "hinge")
    assert result.exit_code == 2 and "'loss'" in result.output
