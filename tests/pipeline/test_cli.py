"""The `pipe` CLI through typer's runner: compose, ls, show, config precedence, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipe_embed.pipeline.cli import app
from typer.testing import CliRunner

runner = CliRunner()

GLOSSARY = (
    "term,definition\n"
    'Rook,"A piece that moves along ranks and files."\n'
    'Bishop,"A piece that moves diagonally any number of squares."\n'
    'Knight,"A piece that moves in an L shape and can jump."\n'
)


@pytest.fixture()
def glossary(tmp_path: Path) -> Path:
    path = tmp_path / "glossary.csv"
    path.write_text(GLOSSARY)
    return path


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def test_help_lists_stages():
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("compose", "ls", "show"):
        assert name in result.output


def test_compose_ls_show_and_cache_hit(tmp_path: Path, glossary: Path):
    data = str(tmp_path / "data")
    first = invoke("compose", "--input", str(glossary), "--data-dir", data)
    assert first.exit_code == 0, first.output
    ref = first.stdout.strip().splitlines()[-1]
    assert ref.startswith("compose@")
    assert "wrote" in first.stderr
    again = invoke("compose", "--input", str(glossary), "--data-dir", data)
    assert again.exit_code == 0 and again.stdout.strip().splitlines()[-1] == ref
    assert "up to date" in again.stderr
    forced = invoke("compose", "--input", str(glossary), "--data-dir", data, "--force")
    assert forced.exit_code == 0 and "wrote" in forced.stderr

    listing = invoke("ls", "--data-dir", data, "--json")
    rows = json.loads(listing.stdout)
    assert [r["ref"] for r in rows] == [ref] and rows[0]["headline"]["anchors"] == 3
    table = invoke("ls", "compose", "--data-dir", data)
    assert ref in table.stdout and "anchors=3" in table.stdout

    shown = invoke("show", "compose@latest", "--data-dir", data)
    manifest = json.loads(shown.stdout)
    assert manifest["version"] == ref.split("@")[1] and manifest["stats"]["anchors"] == 3
    assert invoke("show", "--path", ref, "--data-dir", data).stdout.strip().endswith(ref.split("@")[1])
    by_prefix = invoke("show", ref[:12], "--data-dir", data)
    assert json.loads(by_prefix.stdout)["version"] == manifest["version"]


def test_data_dir_from_environment(tmp_path: Path, glossary: Path):
    data = tmp_path / "envdata"
    result = invoke("compose", "--input", str(glossary), env={"PIPE_DATA_DIR": str(data)})
    assert result.exit_code == 0, result.output
    assert (data / "compose").is_dir()


def test_config_file_and_flag_precedence(tmp_path: Path, glossary: Path):
    data = str(tmp_path / "data")
    cfg = tmp_path / "pipe.toml"
    cfg.write_text("[compose]\ndev_fraction = 0.5\ntest_fraction = 0.2\nseed = 3\n")
    result = invoke("compose", "--input", str(glossary), "--data-dir", data, "--config", str(cfg),
                    "--seed", "4")
    assert result.exit_code == 0, result.output
    config = json.loads(invoke("show", "compose@latest", "--data-dir", data).stdout)["config"]
    assert config["dev_fraction"] == 0.5 and config["test_fraction"] == 0.2 and config["seed"] == 4
    assert config["min_positive_chars"] == 10  # default


def test_bad_config_field_is_named(tmp_path: Path, glossary: Path):
    cfg = tmp_path / "pipe.yaml"
    cfg.write_text("compose:\n  dev_fractoin: 0.5\n")
    result = invoke("compose", "--input", str(glossary), "--data-dir", str(tmp_path / "d"),
                    "--config", str(cfg))
    assert result.exit_code == 2
    assert "unknown field 'dev_fractoin'" in result.stderr and "Traceback" not in result.output
    bad_type = tmp_path / "pipe.json"
    bad_type.write_text(json.dumps({"compose": {"seed": "many"}}))
    result = invoke("compose", "--input", str(glossary), "--data-dir", str(tmp_path / "d"),
                    "--config", str(bad_type))
    assert result.exit_code == 2 and "field 'seed'" in result.stderr


def test_malformed_line_fails_cleanly_and_store_unchanged(tmp_path: Path, glossary: Path):
    data = tmp_path / "data"
    assert invoke("compose", "--input", str(glossary), "--data-dir", str(data)).exit_code == 0
    before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if ".locks" not in p.parts)
    bad = tmp_path / "bad.csv"
    bad.write_text(GLOSSARY + "Queen,too,many,fields\n")
    result = invoke("compose", "--input", str(bad), "--data-dir", str(data))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 + sum("composing" in line for line in lines)
    assert "bad.csv:5: expected 2 fields, found 4" in result.stderr
    after = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if ".locks" not in p.parts)
    assert before == after


def test_compose_needs_an_input(tmp_path: Path):
    result = invoke("compose", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "--input" in result.stderr


def test_show_unknown_ref(tmp_path: Path):
    result = invoke("show", "mine@latest", "--data-dir", str(tmp_path))
    assert result.exit_code == 2 and "no 'mine' artifact" in result.stderr
