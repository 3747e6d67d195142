"""The training loop on a tiny in-process model: saves, reloads plainly, resumes after a kill, caches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import TrainerCallback

from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.evaluate import METRIC_NAMES, evaluate_task, retrieval_task
from pipe_embed.training.train import CHECKPOINTS, MODEL_DIR, run_train


def tiny_config(model: Path, **overrides) -> TrainConfig:
    values = dict(model=str(model), batch_size=4, epochs=1, min_steps=0, eval_steps=2, lr=1e-3, device="cpu", patience=0,
                  seed=7)
    values.update(overrides)
    return TrainConfig(**values)


class SimulatedKill(Exception):
    """Stands in for SIGKILL: the process dies right after a checkpoint was written."""


class KillAfterCheckpoint(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise SimulatedKill(f"killed after checkpoint {state.global_step}")


class StepRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_train_writes_a_plain_sentence_transformers_model(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    from sentence_transformers import SentenceTransformer

    config = tiny_config(tiny_model_path, epochs=2, query_prompt="query: ", passage_prompt="passage: ",
                         query_max_length=16, passage_max_length=24)
    outcome = run_train(store, config, mine_artifact.ref)
    art = outcome.artifact
    assert not outcome.cached and art.stage == "train"
    assert [(i["stage"], i["version"]) for i in art.inputs] == [("mine", mine_artifact.version)]
    assert "base_weights" in art.manifest["fingerprint_extra"]
    model_dir = art.file(MODEL_DIR)
    model = SentenceTransformer(str(model_dir), device="cpu")
    assert model.encode(["rook"]).shape == (1, 32)
    assert model.prompts.get("query") == "query: " and model.prompts.get("document") == "passage: "
    assert (model[0].query_length, model[0].document_length) == (16, 24)
    assert not art.file(CHECKPOINTS).exists()

    metrics = json.loads(art.file("metrics.json").read_text())
    assert metrics["train"]["steps"] == art.metrics["train"]["steps"] > 0
    assert {"dev", "dev_base"} <= set(metrics) and metrics["dev"]["queries"] == 2
    assert metrics["train"]["best_checkpoint_step"] is not None
    # the dev metrics reported are those of the saved model (re-scored here from scratch)
    rescored = evaluate_task(model, retrieval_task(store.upstream(art, "compose").path, "dev"))
    for name in METRIC_NAMES:
        assert metrics["dev"][name] == pytest.approx(rescored[name], abs=1e-6), name
    log = [json.loads(line) for line in art.file("logs/train_log.jsonl").read_text().splitlines()]
    train_steps = [e["step"] for e in log if e["kind"] == "train"]
    assert train_steps == list(range(1, metrics["train"]["steps"] + 1))
    assert all(e["loss"] is not None and e["lr"] is not None for e in log if e["kind"] == "train")
    assert any(e["kind"] == "eval" for e in log)
    epochs = json.loads(art.file("logs/epochs.json").read_text())
    assert [e["epoch"] for e in epochs] == [1, 2] and all(e["mean_loss"] > 0 for e in epochs)
    assert json.loads(art.file("logs/summary.json").read_text())["data"] == mine_artifact.ref
    assert any(art.path.glob("logs/tensorboard/events.out.tfevents.*"))
    card = art.file("model/README.md").read_text()
    assert mine_artifact.ref in card and "mrr@10" in card and "| lr |" in card
    assert art.stats["anchors_padded"] > 0 and art.stats["rows"] == 13
    assert art.stats["peak_rss_mb"] > 50  # the peak memory of the run, for users sizing a machine

    again = run_train(store, config, mine_artifact.ref)
    assert again.cached and again.artifact.version == art.version


def test_killed_run_resumes_from_its_last_checkpoint(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    config = tiny_config(tiny_model_path, epochs=2)  # 13 rows / batch 4 -> 4 steps per epoch, 8 in all
    with pytest.raises(SimulatedKill):
        run_train(store, config, mine_artifact.ref, callbacks=[KillAfterCheckpoint(4)])
    assert store.versions("train") == []  # nothing that looks finished
    work = next(store.stage_dir("train").glob(".work-*"))
    assert (work / CHECKPOINTS / "checkpoint-4").is_dir()
    # a checkpoint the kill interrupted half-written is skipped
    (work / CHECKPOINTS / "checkpoint-6").mkdir()
    (work / CHECKPOINTS / "checkpoint-6" / "config.json").write_text("{}")

    recorder = StepRecorder()
    outcome = run_train(store, config, mine_artifact.ref, callbacks=[recorder])
    assert recorder.steps and recorder.steps[0] == 5  # continued, did not start again from step 0
    train = outcome.artifact.metrics["train"]
    assert train["resumed_from_step"] == 4 and train["steps"] == 8
    log = [json.loads(line) for line in outcome.artifact.file("logs/train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if e["kind"] == "train"] == list(range(1, 9))  # no step logged twice
    assert not work.exists()  # the work dir became the artifact


@pytest.mark.parametrize("loss", ["cached-mnrl", "gist"])
def test_other_losses_train(store: Store, tiny_model_path: Path, mine_artifact, loss: str) -> None:
    from pipe_embed.training.losses.cached_mnrl import CachedMnrlParams

    config = tiny_config(tiny_model_path, loss=loss, max_steps=2, eval_base=False, temperature=0.1,
                         params={"cached-mnrl": CachedMnrlParams(mini_batch_size=2)},
                         grad_checkpointing=loss == "cached-mnrl", pad_to_multiple_of=8)
    art = run_train(store, config, mine_artifact.ref).artifact
    assert art.metrics["train"]["steps"] == 2 and art.config["loss"] == loss
    assert art.stats["negatives_per_row"] == (1 if loss == "gist" else 3)  # GIST takes one negative
    saved = json.loads(art.file("model/sentence_bert_config.json").read_text())
    assert "pad_to_multiple_of" not in json.dumps(saved)  # a training setting, not saved into the model


def test_lora_merges_into_a_full_model(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    config = tiny_config(tiny_model_path, lora=True, lora_r=4, lora_alpha=8, max_steps=3, eval_base=False,
                         lr=5e-2, pooling="cls")
    art = run_train(store, config, mine_artifact.ref).artifact
    model_dir = art.file(MODEL_DIR)
    assert (model_dir / "model.safetensors").is_file() and not (model_dir / "adapter_config.json").exists()
    trained = SentenceTransformer(str(model_dir), device="cpu")
    base = SentenceTransformer(str(tiny_model_path), device="cpu")
    assert trained[1].pooling_mode == "cls"
    base[1].pooling_mode = "cls"
    assert not np.allclose(trained.encode(["rook"]), base.encode(["rook"]), atol=1e-6)


def test_without_mined_negatives_trains_on_compose_and_defaults_to_latest(store: Store, tiny_model_path: Path,
                                                                           compose_artifact) -> None:
    art = run_train(store, tiny_config(tiny_model_path, max_steps=1, warmup_ratio=0.0, eval_base=False)).artifact
    assert art.inputs == [{"stage": "compose", "version": compose_artifact.version}]
    assert art.stats["negatives_per_row"] == 0


def test_plain_pairs_file_from_seed_config_trains_and_exports(store: Store, tiny_model_path: Path,
                                                             compose_artifact, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    config = tiny_config(tiny_model_path, pairs_path=str(compose_artifact.file("pairs.jsonl")), max_steps=2,
                         export_dir=str(tmp_path / "out" / "model"))
    art = run_train(store, config).artifact
    assert art.inputs == [] and "pairs_sha256" in art.manifest["fingerprint_extra"]
    assert "dev" not in art.metrics
    SentenceTransformer(str(tmp_path / "out" / "model"), device="cpu")


def test_clear_errors(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    with pytest.raises(ConfigError, match="'qlora'.*CUDA"):
        run_train(store, tiny_config(tiny_model_path, qlora=True, lora=True), mine_artifact.ref)
    with pytest.raises(ConfigError, match="'precision'.*CUDA"):
        run_train(store, tiny_config(tiny_model_path, precision="fp16"), mine_artifact.ref)
    with pytest.raises(PipeError, match="no 'mine' artifact|not an artifact|no mine or compose"):
        run_train(Store(store.root / "empty"), tiny_config(tiny_model_path))


def _eval_steps(art) -> list[int]:
    log = [json.loads(line) for line in art.file("logs/train_log.jsonl").read_text().splitlines()]
    return [e["step"] for e in log if e["kind"] == "eval"]


def test_evaluates_every_n_steps_and_at_each_epoch_end(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    config = tiny_config(tiny_model_path, epochs=2, eval_steps=3, eval_base=False)  # 4 steps per epoch
    art = run_train(store, config, mine_artifact.ref).artifact
    assert _eval_steps(art) == [3, 4, 6, 8]


def test_early_stopping_with_patience(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    # A learning rate this small leaves the dev metric unchanged: no improvement after the first evaluation.
    config = tiny_config(tiny_model_path, epochs=3, eval_steps=1, patience=2, lr=1e-12, eval_base=False)
    art = run_train(store, config, mine_artifact.ref).artifact
    train = art.metrics["train"]
    assert train["early_stopped"] is True and train["steps"] == 3 < train["max_steps"] == 12
    assert _eval_steps(art) == [1, 2, 3] and train["best_checkpoint_step"] == 1


def test_qlora_merge_path_reloads_the_base_and_merges_there(tiny_model_path: Path) -> None:
    """The QLoRA merge (adapters moved onto a freshly loaded full-precision base) on CPU, minus the 4 bits."""
    import numpy as np
    import torch

    from pipe_embed.training.train import (
        add_lora,
        merge_lora,
        merge_qlora,
        prepare_model,
    )

    config = tiny_config(tiny_model_path, lora=True, lora_r=4)
    model = prepare_model(config, "cpu")
    add_lora(model, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # as if trained
    merged_elsewhere = merge_qlora(model, TrainConfig(**{**config.__dict__, "qlora": True}), "cpu")
    merge_lora(model)
    texts = ["rook", "a piece that moves diagonally"]
    assert np.allclose(merged_elsewhere.encode(texts), model.encode(texts), atol=1e-5)
    assert not np.allclose(model.encode(texts), prepare_model(config, "cpu").encode(texts), atol=1e-4)


@pytest.mark.parametrize("name", ["flag.jsonl", "glossary.csv"])
def test_from_a_raw_pairs_file_says_to_compose_it(store: Store, tiny_model_path: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    from pipe_embed.training.train import PairsFileNotArtifact

    (tmp_path / name).write_text('{"query": "rook", "pos": ["a piece"], "neg": []}\n')
    monkeypatch.chdir(tmp_path)
    for ref in (name, str(tmp_path / name)):  # a bare name, as typed, and a path
        with pytest.raises(PairsFileNotArtifact) as caught:
            run_train(store, tiny_config(tiny_model_path), ref)
        line = caught.value.line()
        assert "is a pairs file, not a data artifact" in line and f"pipe compose --input {ref}" in line
        assert caught.value.path == Path(ref)
    with pytest.raises(PipeError, match="no such file"):
        run_train(store, tiny_config(tiny_model_path), "missing.jsonl")


def test_with_dev_refits_on_train_and_dev_rows_without_evaluating(store: Store, tiny_model_path: Path,
                                                                   mine_artifact, capsys) -> None:
    plain = run_train(store, tiny_config(tiny_model_path, max_steps=1, warmup_ratio=0.0, eval_base=False),
                      mine_artifact.ref).artifact
    refit = run_train(store, tiny_config(tiny_model_path, max_steps=1, warmup_ratio=0.0, eval_base=False, with_dev=True),
                      mine_artifact.ref).artifact
    assert refit.version != plain.version
    assert refit.stats["rows"] == plain.stats["rows"] + 2  # the two dev terms (fork, epoch) join the train rows
    assert "dev" in plain.metrics and "dev" not in refit.metrics  # nothing left to evaluate on
    assert "refit: training on 2 dev anchors" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="with_dev"):
        tiny_config(tiny_model_path, with_dev=True, stream=True).validate()


def test_summary_json_is_strict_and_keeps_other_values_as_text() -> None:
    from pipe_embed.pipeline.core.store import finite_json
    from pipe_embed.training.train import _json_values

    text = finite_json(_json_values({"loss": float("nan"), "lr": [1e-3, float("inf")], "path": Path("runs/x"),
                                     "steps": 3}))
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "lr": [1e-3, None], "path": "runs/x", "steps": 3}
