"""Several eval sets during training: a compose artifact and a BEIR directory, their mean picks the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import TrainerCallback
from typer.testing import CliRunner

from pipe_embed.pipeline.cli import app
from pipe_embed.pipeline.core.errors import ConfigError, InputError, PipeError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.evaldata import parse_spec, read_beir
from pipe_embed.training.train import run_train
from tests.training.conftest import _row, make_compose
from tests.training.test_train import tiny_config

SIMILARITY = "cosine"


def write_beir(folder: Path, qrels: str | None = None) -> Path:
    """A tiny BEIR-layout set: chess terms asking for their definitions (titles joined to the text)."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = {"d1": ("Rook", "a chess piece that moves along ranks and files"),
            "d2": ("", "a piece that moves diagonally across the board"),
            "d3": ("Knight", "a piece that moves in an L shape and can jump"),
            "d4": ("", "one full pass over the training data")}
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n"
                                                 for k, (t, x) in docs.items()))
    queries = {"q1": "rook", "q2": "bishop", "q3": "knight", "q4": "epoch", "q5": "unjudged"}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in queries.items()))
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(
        qrels or "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t2\nq4\td4\t1\nq4\td1\t0\nq1\tgone\t1\n")
    return folder


def other_compose(store: Store):
    """A second compose-like artifact (other terms in dev, so another version) to evaluate on."""
    train = ["rook", "bishop", "pawn", "castling", "checkmate", "gradient descent", "dropout", "batch"]
    dev = {"knight": "a piece that moves in an L shape and can jump",
           "overfitting": "when a model learns noise in the training data",
           "learning rate": "the step size of each optimisation update"}
    splits = {"train": [_row(t, [f"definition of {t}"]) for t in train],
              "dev": [_row(t, [d]) for t, d in dev.items()], "test": []}
    return make_compose(store, splits)


class ArgsRecorder(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        self.metric_for_best_model = args.metric_for_best_model
        self.load_best = args.load_best_model_at_end


def test_specs_name_split_and_refuse_the_reserved_name() -> None:
    assert parse_spec("compose@abc") == parse_spec("compose@abc")
    spec = parse_spec("law=data/beir/law#dev")
    assert (spec.name, spec.ref, spec.split) == ("law", "data/beir/law", "dev")
    assert parse_spec("compose@latest#test").split == "test" and parse_spec("compose@latest").name is None
    with pytest.raises(ConfigError, match="reserved"):
        parse_spec("mean=compose@latest")
    with pytest.raises(ConfigError, match="'eval_data'.*split 'valid'"):
        parse_spec("x#valid")


def test_beir_directory_reads_as_a_retrieval_task(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "nano")
    task, qrels = read_beir(folder)
    assert qrels.name == "test.tsv"
    assert task.corpus["d1"] == "Rook a chess piece that moves along ranks and files"  # title + text
    assert task.corpus["d2"] == "a piece that moves diagonally across the board"
    assert task.relevant == {"q1": {"d1"}, "q2": {"d2"}, "q3": {"d3"}, "q4": {"d4"}}  # score 0 and unknown ids out
    assert set(task.queries) == {"q1", "q2", "q3", "q4"}
    (folder / "qrels" / "dev.tsv").write_text("q3\td3\t1\n")  # no header; dev.tsv is preferred
    assert read_beir(folder)[0].relevant == {"q3": {"d3"}}
    assert read_beir(folder, "test")[0].relevant["q1"] == {"d1"}
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "rook"}\n{broken\n')
    with pytest.raises(InputError, match=r"queries.jsonl:2: not valid JSON"):
        read_beir(folder)


def test_eval_sets_are_scored_and_their_mean_picks_the_checkpoint(store: Store, tiny_model_path: Path,
                                                                   mine_artifact, tmp_path: Path) -> None:
    second = other_compose(store)
    beir = write_beir(tmp_path / "nano")
    recorder = ArgsRecorder()
    config = tiny_config(tiny_model_path, epochs=2, eval_steps=2, patience=3,
                         eval_data=[second.ref, f"nano={beir}"])
    art = run_train(store, config, mine_artifact.ref, callbacks=[recorder]).artifact
    assert recorder.metric_for_best_model == f"eval_mean_{SIMILARITY}_mrr@10" and recorder.load_best
    name = f"compose-{second.version[:8]}"
    sets = art.metrics["eval_sets"]
    assert set(sets) == {"dev", name, "nano", "mean"}
    assert 0 <= sets[name]["mrr@10"] <= 1 and sets["nano"]["recall@10"] == 1.0  # 4 documents: all in the top 10
    for metric in ("mrr@10", "ndcg@10", "recall@1"):
        average = (sets["dev"][metric] + sets[name][metric] + sets["nano"][metric]) / 3
        assert sets["mean"][metric] == pytest.approx(average)

    log = [json.loads(line) for line in art.file("logs/train_log.jsonl").read_text().splitlines()]
    evals = [e for e in log if e["kind"] == "eval"]
    assert evals and all(f"eval_{n}_{SIMILARITY}_mrr@10" in e for e in evals for n in ("dev", name, "nano", "mean"))
    means = [(e["step"], e[f"eval_mean_{SIMILARITY}_mrr@10"]) for e in evals]
    best_step, best_value = max(means, key=lambda sv: (sv[1], -sv[0]))  # the first best, as the trainer keeps it
    train = art.metrics["train"]
    assert train["best_dev_metric"] == pytest.approx(best_value) and train["best_checkpoint_step"] == best_step
    kept = next(e for e in evals if e["step"] == best_step)
    assert sets["nano"]["mrr@10"] == pytest.approx(kept[f"eval_nano_{SIMILARITY}_mrr@10"])
    assert art.manifest["headline"]["eval_mean_mrr@10"] == round(sets["mean"]["mrr@10"], 4)
    extra = art.manifest["fingerprint_extra"]["eval_sets"]
    assert extra[1]["artifact"]["version"] == second.version and set(extra[2]["beir"]) == {"corpus", "queries", "qrels"}

    # the same data named differently is the same training (a cache hit), through the CLI's --eval-data
    result = CliRunner().invoke(app, [
        "train", "--data-dir", str(store.root), "--from", mine_artifact.ref, "--model", str(tiny_model_path),
        "--batch-size", "4", "--epochs", "2", "--min-steps", "0", "--eval-steps", "2", "--lr", "1e-3", "--device", "cpu",
        "--patience", "3", "--seed", "7", "--eval-data", f"{second.ref},renamed={beir}"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == art.ref and "up to date" in result.output

    # other judgements are other data: a new training; without the dev split the mean is over the two sets
    (beir / "qrels" / "test.tsv").write_text("q1\td1\t1\nq3\td3\t1\n")
    changed = tiny_config(tiny_model_path, max_steps=2, eval_steps=1, eval_base=False, eval_with_dev=False,
                          eval_data=[second.ref, f"nano={beir}"])
    other = run_train(store, changed, mine_artifact.ref).artifact
    assert set(other.metrics["eval_sets"]) == {name, "nano", "mean"}
    assert other.metrics["dev"]["queries"] == 2  # the dev split is still reported, scored on the kept model


def test_bad_eval_data_fails_before_training(store: Store, tiny_model_path: Path, mine_artifact,
                                             tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="neither a data artifact nor a BEIR directory.*corpus.jsonl"):
        run_train(store, tiny_config(tiny_model_path, eval_data=[str(tmp_path / "plain")]), mine_artifact.ref)
    with pytest.raises(PipeError, match="compose@ffff"):
        run_train(store, tiny_config(tiny_model_path, eval_data=["compose@ffff"]), mine_artifact.ref)
    assert store.versions("train") == [] and not list(store.root.glob("train/.work-*"))
