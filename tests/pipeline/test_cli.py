"""The `pipe` CLI through typer's runner: compose, ls, show, config precedence, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipe_embed.pipeline.cli import app

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


# -- the CLI generated from the configs -------------------------------------------------------------

def test_every_config_field_is_a_flag_with_its_doc_and_default():
    import dataclasses

    from pipe_embed.mining.stage import MineConfig
    from pipe_embed.pipeline.cli.options import flag_name
    from pipe_embed.pipeline.core.config import section_types
    from pipe_embed.training.config import TrainConfig

    for command, cls in (("mine", MineConfig), ("train", TrainConfig)):
        text = invoke(command, "--help", env={"COLUMNS": "400"}).stdout
        fields = [*dataclasses.fields(cls), *(f for kind in section_types(cls).values() for f in dataclasses.fields(kind))]
        for field in fields:
            if not field.metadata.get("cli", True):
                continue  # config files only (a plug-in config's `params`: its sections' fields are flags)
            decl = field.metadata.get("flag") or flag_name(field.name)
            assert decl.split("/")[0] in text, f"{command}: no flag for {field.name}"
    text = invoke("mine", "--help", env={"COLUMNS": "400"}).stdout
    assert "Hard negatives per anchor" in text and "[default: 3]" in text  # doc and default of num_negatives
    assert "<bool>" not in text and "BOOLEAN" not in text  # switches take no value


def test_a_new_config_field_becomes_a_flag():
    from dataclasses import dataclass

    from pipe_embed.pipeline.cli.options import config_parameters
    from pipe_embed.pipeline.core.config import option

    @dataclass
    class Toy:
        new_knob: float = option(0.5, "A knob added later.")
        switch: bool = option(False, "A switch.", flag="--flip/--flop")

    params = {p.name: p for p in config_parameters(Toy)}
    knob = params["new_knob"].annotation.__metadata__[0]
    assert knob.param_decls == ("--new-knob",) or knob.default == "--new-knob"
    assert "A knob added later." in knob.help and "0.5" in knob.help
    switch = params["switch"].annotation.__metadata__[0]
    assert "--flip/--flop" in (switch.param_decls or ()) or switch.default == "--flip/--flop"


def test_shared_options_before_the_command(tmp_path: Path, glossary: Path):
    data = tmp_path / "before"
    result = invoke("--data-dir", str(data), "-q", "compose", "--input", str(glossary))
    assert result.exit_code == 0, result.output
    assert (data / "compose").is_dir() and result.stderr == ""


def test_unknown_flag_is_one_line(tmp_path: Path):
    result = invoke("mine", "--no-such-flag", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--no-such-flag" in lines[0] and "pipe mine --help" in lines[0]


def test_a_pairs_file_where_an_artifact_is_expected_is_composed_first(tmp_path: Path):
    flag = tmp_path / "flag.jsonl"
    rows = [{"query": f"term {i}", "pos": [f"definition number {i} of the glossary, long enough"]} for i in range(12)]
    flag.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = str(tmp_path / "data")
    result = invoke("mine", "--method", "bm25", "--from", str(flag), "--data-dir", data)
    assert result.exit_code == 0, result.output
    assert "is a pairs file, not an artifact: composed it into compose@" in result.stderr
    mine = json.loads(invoke("show", "mine@latest", "--data-dir", data).stdout)
    assert mine["inputs"][0]["stage"] == "compose"


def test_an_unexpected_error_is_one_line_with_the_log_path(tmp_path: Path, glossary: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    from pipe_embed.pipeline.compose import stage

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(stage, "group_rows", broken)
    result = invoke("compose", "--input", str(glossary), "--data-dir", str(tmp_path / "d"),
                    env={"PIPE_LOG_DIR": str(tmp_path / "logs")})
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip() and "composing" not in line]
    assert len(lines) == 1 and "unexpected RuntimeError: something inside broke" in lines[0]
    log = Path(lines[0].split("the traceback is in ")[1].split(";")[0])
    assert log.is_file() and "Traceback" in log.read_text() and "something inside broke" in log.read_text()
    assert "Traceback" not in result.stderr
