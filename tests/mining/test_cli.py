"""`pipe mine` through typer's runner on a real `pipe compose` artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipe_embed.pipeline.cli import app
from pipe_embed.pipeline.core.store import Store
from tests.mining.conftest import GLOSSARY

runner = CliRunner()


@pytest.fixture()
def data(tmp_path: Path) -> str:
    """A data dir holding one compose artifact of the test glossary."""
    csv = tmp_path / "glossary.csv"
    csv.write_text("term,definition\n" + "".join(f'{t},"{d}"\n' for t, d in GLOSSARY))
    data = str(tmp_path / "data")
    result = runner.invoke(app, ["compose", "--input", str(csv), "--data-dir", data, "--test-fraction", "0.1",
                                 "--dev-fraction", "0.1"])
    assert result.exit_code == 0, result.output
    return data


def manifest(data: str, ref: str) -> dict:
    return Store(data).resolve(ref).manifest


def test_mine_bm25_with_exports(data: str):
    result = runner.invoke(app, ["mine", "--method", "bm25", "--data-dir", data, "--num-negatives", "2",
                                 "--format", "flag,st-triplet"])
    assert result.exit_code == 0, result.output
    ref = result.stdout.strip().splitlines()[-1]
    art = Store(data).resolve(ref)
    assert art.file("export/flag.jsonl").is_file() and art.file("export/st-triplet.jsonl").is_file()
    assert art.config["num_negatives"] == 2 and art.config["formats"] == ["flag", "st-triplet"]
    assert "anchors short of negatives" in result.stderr  # the diagnostics table


def test_mine_faiss_twice_encodes_nothing_the_second_time(data: str, tiny_model_path: Path):
    args = ["mine", "--method", "faiss", "--model", str(tiny_model_path), "--data-dir", data, "--range-max", "10"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    ref = first.stdout.strip().splitlines()[-1]
    assert manifest(data, ref)["stats"]["encoded_texts"] > 0
    cached = runner.invoke(app, args)
    assert cached.exit_code == 0 and "up to date" in cached.stderr
    forced = runner.invoke(app, args + ["--force"])
    assert forced.exit_code == 0, forced.output
    assert manifest(data, ref)["stats"]["encoded_texts"] == 0


def test_sharded_encoding_then_mine_encodes_nothing(data: str, tiny_model_path: Path):
    base = ["mine", "--method", "faiss", "--model", str(tiny_model_path), "--data-dir", data, "--range-max", "10"]
    for shard in ("0", "1"):
        result = runner.invoke(app, base + ["--shard", shard, "--num-shards", "2"])
        assert result.exit_code == 0, result.output
        assert "encoded" in result.stderr
    assert Store(data).versions("mine") == []  # shards write no artifact
    final = runner.invoke(app, base)
    assert final.exit_code == 0, final.output
    assert manifest(data, final.stdout.strip().splitlines()[-1])["stats"]["encoded_texts"] == 0


def test_mine_errors_are_one_line_with_exit_2(data: str, tmp_path: Path):
    too_many = runner.invoke(app, ["mine", "--method", "bm25", "--data-dir", data, "--num-negatives", "40"])
    assert too_many.exit_code == 2 and "num_negatives" in too_many.stderr
    assert "Traceback" not in too_many.output
    corpus_asks = runner.invoke(app, ["mine", "--method", "bm25", "--data-dir", data, "--num-negatives", "25",
                                      "--range-max", "30"])
    assert corpus_asks.exit_code == 2 and "candidate corpus has only" in corpus_asks.stderr
    empty = runner.invoke(app, ["mine", "--method", "bm25", "--data-dir", str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "no 'compose' artifact" in empty.stderr
    bad_method = runner.invoke(app, ["mine", "--method", "sparse", "--data-dir", data])
    assert bad_method.exit_code == 2 and "method" in bad_method.stderr
    assert Store(data).versions("mine") == []


def test_mine_reads_its_section_of_a_config_file(data: str, tmp_path: Path):
    cfg = tmp_path / "pipe.toml"
    cfg.write_text('[mine]\nmethod = "bm25"\nnum_negatives = 1\n[mine.bm25]\nstemmer = "none"\n')
    result = runner.invoke(app, ["mine", "--data-dir", data, "--config", str(cfg), "--num-negatives", "2"])
    assert result.exit_code == 0, result.output
    config = manifest(data, result.stdout.strip().splitlines()[-1])["config"]
    assert config["method"] == "bm25" and config["num_negatives"] == 2
    assert config["params"] == {"bm25": {**config["params"]["bm25"], "stemmer": "none"}}  # bm25's section only
    assert json.dumps(config)  # plain JSON in the manifest
