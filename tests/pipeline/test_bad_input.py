"""Every command with bad input: exit 2, one error line on stderr, no traceback, nothing new in the store.

The sweep runs each command through typer's runner in-process, on a store that holds one small
compose artifact. No model is ever loaded: where a model is needed, `--model` points at a directory
that is not a model, which must be refused before any work starts.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from pipe_embed.pipeline.cli import app
from typer.testing import CliRunner

runner = CliRunner()

@dataclass(frozen=True)
class Case:
    """One bad invocation: its arguments, a fragment the error line must hold, and why it may still fail."""

    id: str
    args: tuple[str, ...]
    says: str
    xfail: str | None = None
    own_data_dir: bool = False  # the case passes its own --data-dir
    quiet: bool = True  # stage commands take -q: the error is then the only line


CASES = [
    # crawl
    Case("crawl-unknown-source", ("crawl", "--sources", "nope"), "unknown source 'nope'"),
    Case("crawl-html-missing-file", ("crawl", "--sources", "html", "--input", "{files}/missing.html",
                                     "--selectors", "term=dt; definition=dd"), "missing.html"),
    Case("crawl-bad-flag-value", ("crawl", "--timeout", "abc"), "--timeout"),
    Case("crawl-wordnet-dir-not-wordnet", ("crawl", "--sources", "wordnet", "--wordnet-dir", "{files}/adir"), "adir"),
    Case("crawl-data-dir-is-a-file", ("crawl", "--dry-run", "--data-dir", "{files}/afile"),
         "the data dir is a file", own_data_dir=True),
    Case("crawl-config-key-of-compose", ("crawl", "--dry-run", "--config", "{files}/crawl_has_compose_key.toml"),
         "[compose]"),
    # compose
    Case("compose-missing-file", ("compose", "--input", "{files}/missing.csv"), "missing.csv: input file not found"),
    Case("compose-malformed-row", ("compose", "--input", "{files}/bad.csv"), "bad.csv:3: expected 2 fields, found 3"),
    Case("compose-wrong-type", ("compose", "--input", "{files}/wrong.jsonl"),
         "wrong.jsonl:2: column 'positive': expected text or a list of texts, got a number (123456789012345)"),
    Case("compose-nested-object", ("compose", "--input", "{files}/nested.jsonl"), "nested.jsonl:1: column 'positive'"),
    Case("compose-directory", ("compose", "--input", "{files}/adir"), "adir: is a directory, not a file"),
    Case("compose-not-utf8", ("compose", "--input", "{files}/latin.csv"), "latin.csv:3: not UTF-8 text"),
    Case("compose-unclosed-quote", ("compose", "--input", "{files}/quote.csv"),
         "quote.csv:3: malformed CSV: a quote opened on this line is not closed"),
    Case("compose-unsupported-type", ("compose", "--input", "{files}/g.xlsx"), "unsupported file type '.xlsx'"),
    Case("compose-empty-file", ("compose", "--input", "{files}/empty.csv"), "the file is empty"),
    Case("compose-bad-flag-value", ("compose", "--input", "{files}/good.csv", "--seed", "abc"), "--seed"),
    Case("compose-bad-fractions", ("compose", "--input", "{files}/good.csv", "--dev-fraction", "0.9",
                                   "--test-fraction", "0.5"), "dev_fraction"),
    Case("compose-missing-ref", ("compose", "--from", "crawl@latest"), "no 'crawl' artifact"),
    Case("compose-ref-climbs-out", ("compose", "--from", "../outside/crawl@latest"), "is not a stage name"),
    Case("compose-config-not-utf8", ("compose", "--input", "{files}/good.csv", "--config", "{files}/latin.toml"),
         "latin.toml: not UTF-8 text"),
    Case("compose-config-is-a-directory", ("compose", "--input", "{files}/good.csv", "--config", "{files}/adir"),
         "is a directory, not a config file"),
    Case("compose-config-unknown-key-names-its-table",
         ("compose", "--input", "{files}/good.csv", "--config", "{files}/typo.toml"),
         "typo.toml: [compose] unknown field 'dev_fractoin'"),
    Case("compose-config-key-of-mine", ("compose", "--input", "{files}/good.csv", "--config", "{files}/misplaced.toml"),
         "[mine]"),
    Case("compose-data-dir-is-a-file", ("compose", "--input", "{files}/good.csv", "--data-dir", "{files}/afile"),
         "the data dir is a file", own_data_dir=True),
    Case("compose-markup-in-a-file-name", ("compose", "--input", "{files}/[/x].csv"), "[/x].csv"),
    # mine
    Case("mine-missing-ref", ("mine", "--method", "bm25", "--from", "nothing@latest"), "no 'nothing' artifact"),
    Case("mine-ref-without-version", ("mine", "--method", "bm25", "--from", "compose@"), "give a version after '@'"),
    Case("mine-model-not-a-model", ("mine", "--method", "faiss", "--model", "{files}/bogus_model"), "bogus_model"),
    Case("mine-corpus-not-utf8", ("mine", "--method", "bm25", "--corpus", "{files}/latin.txt"),
         "latin.txt:2: not UTF-8 text"),
    Case("mine-corpus-wrong-type", ("mine", "--method", "bm25", "--corpus", "{files}/corpus_wrong.jsonl"),
         "corpus_wrong.jsonl:1: column 'text': expected text, got a number"),
    Case("mine-corpus-directory", ("mine", "--method", "bm25", "--corpus", "{files}/adir"), "adir"),
    Case("mine-bad-flag-value", ("mine", "--num-negatives", "x"), "--num-negatives"),
    Case("mine-bad-choice", ("mine", "--method", "nope"), "method"),
    Case("mine-data-dir-is-a-file", ("mine", "--method", "bm25", "--data-dir", "{files}/afile"),
         "the data dir is a file", own_data_dir=True),
    # train
    Case("train-model-not-a-model", ("train", "--from", "compose@latest", "--model", "{files}/bogus_model"),
         "bogus_model"),
    Case("train-model-dir-missing", ("train", "--from", "compose@latest", "--model", "{files}/no_such_model/"),
         "no_such_model"),
    Case("train-missing-ref", ("train", "--from", "mine@latest", "--model", "{files}/bogus_model"),
         "no 'mine' artifact"),
    Case("train-ref-climbs-out", ("train", "--from", "..@latest"), "is not a stage name"),
    Case("train-ref-path-outside", ("train", "--from", "{files}"), "outside the data dir"),
    Case("train-bad-flag-value", ("train", "--epochs", "x"), "--epochs"),
    Case("train-bad-choice", ("train", "--loss", "nope"), "loss"),
    Case("train-config-key-of-mine", ("train", "--config", "{files}/train_has_mine_key.toml"),
         "[mine]"),
    # eval
    Case("eval-model-not-a-model", ("eval", "--model", "{files}/bogus_model", "--data", "compose@latest"),
         "bogus_model"),
    Case("eval-missing-train", ("eval", "--model", "train@latest"), "no 'train' artifact"),
    Case("eval-data-outside", ("eval", "--model", "{files}/bogus_model", "--data", "{files}"),
         "outside the data dir"),
    Case("eval-bad-split", ("eval", "--model", "{files}/bogus_model", "--data", "compose@latest", "--split", "nope"),
         "split"),
    # iterate
    Case("iterate-model-not-a-model", ("iterate", "--model", "{files}/bogus_model", "--rounds", "1"), "bogus_model"),
    Case("iterate-bad-flag-value", ("iterate", "--rounds", "x"), "--rounds"),
    Case("iterate-missing-ref", ("iterate", "--from", "nothing@latest", "--model", "{files}/bogus_model"),
         "no 'nothing' artifact"),
    Case("iterate-config-key-of-compose", ("iterate", "--config", "{files}/iterate_has_compose_key.toml",
                                           "--model", "{files}/bogus_model"),
         "[compose]"),
    # report
    Case("report-missing-iterate", ("report",), "no 'iterate' artifact"),
    Case("report-wrong-stage", ("report", "compose@latest"), "expected a 'iterate' artifact"),
    Case("report-ref-climbs-out", ("report", "../outside/iterate@latest"), "is not a stage name"),
    # ls, show, gc (no -q: they print nothing but the error)
    Case("ls-stage-climbs-out", ("ls", ".."), "'..' is not a stage name", quiet=False),
    Case("ls-data-dir-is-a-file", ("ls", "--data-dir", "{files}/afile"), "the data dir is a file",
         own_data_dir=True, quiet=False),
    Case("show-version-missing", ("show", "compose@"), "compose@: give a version after '@'", quiet=False),
    Case("show-stage-missing", ("show", "@latest"), "@latest: give a stage before '@'", quiet=False),
    Case("show-stage-climbs-out", ("show", "../outside/compose@latest"), "is not a stage name", quiet=False),
    Case("show-dotdot", ("show", "..@latest"), "'..' is not a stage name", quiet=False),
    Case("show-path-outside", ("show", "{files}/outside/compose/abc"), "outside the data dir", quiet=False),
    Case("show-missing-ref", ("show", "mine@latest"), "no 'mine' artifact", quiet=False),
    Case("show-ambiguous-or-unknown-prefix", ("show", "compose@zzzz"), "no 'compose' version starts with 'zzzz'",
         quiet=False),
    Case("gc-data-dir-is-a-file", ("gc", "--data-dir", "{files}/afile"), "the data dir is a file",
         own_data_dir=True, quiet=False),
    Case("gc-bad-flag", ("gc", "--yes=maybe"), "--yes", quiet=False),
]

GLOSSARY = [(f"Term {i}", f"Definition number {i} about topic {i % 7} of the glossary.") for i in range(40)]


def _write_files(files: Path) -> None:
    """Every bad input the cases name, plus one good glossary."""
    files.mkdir()
    (files / "adir").mkdir()
    (files / "afile").write_text("not a directory\n")
    bogus = files / "bogus_model"
    bogus.mkdir()
    (bogus / "config.json").write_text("{}\n")  # looks like a model directory, holds no weights
    (files / "good.csv").write_text("term,definition\n" + "".join(f'{t},"{d}"\n' for t, d in GLOSSARY))
    (files / "bad.csv").write_text('term,definition\nRook,"A piece that moves along files."\nKing,too,many\n')
    (files / "wrong.jsonl").write_text(json.dumps({"anchor": "Rook", "positive": "A piece that moves."}) + "\n"
                                       + json.dumps({"anchor": "King", "positive": 123456789012345}) + "\n")
    (files / "nested.jsonl").write_text(json.dumps({"anchor": "Rook", "positive": {"text": "nested"}}) + "\n")
    (files / "latin.csv").write_bytes("term,definition\nRook,A piece.\nCaf\u00e9,A place.\n".encode("latin-1"))
    (files / "quote.csv").write_text("term,definition\nRook,A piece that moves.\nKing,\"The piece to protect.\n"
                                     + "".join(f"Term {i},Definition {i}.\n" for i in range(30)))
    (files / "g.xlsx").write_bytes(b"PK\x03\x04")
    (files / "empty.csv").write_text("")
    (files / "[").mkdir()  # "[/x].csv" below is x].csv in a folder "[": a path that reads as rich markup
    (files / "[/x].csv").write_text("term,definition\nRook,too,many\n")
    (files / "latin.txt").write_bytes("first text\nsecond caf\u00e9 text\n".encode("latin-1"))
    (files / "corpus_wrong.jsonl").write_text(json.dumps({"text": 12}) + "\n")
    (files / "latin.toml").write_bytes("[compose]\n# caf\u00e9\n".encode("latin-1"))
    (files / "typo.toml").write_text("[compose]\ndev_fractoin = 0.2\n")
    (files / "misplaced.toml").write_text("[compose]\nnum_negatives = 5\n")
    (files / "crawl_has_compose_key.toml").write_text("[crawl]\ndev_fraction = 0.2\n")
    (files / "train_has_mine_key.toml").write_text("[train]\nnum_negatives = 5\n")
    (files / "iterate_has_compose_key.toml").write_text("[iterate]\ndev_fraction = 0.2\n")
    outside = files / "outside" / "compose" / "abc"
    outside.mkdir(parents=True)
    (outside / "manifest.json").write_text(json.dumps({"stage": "compose", "version": "abc"}))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the bad files and a store holding one compose artifact of the good glossary."""
    root = tmp_path_factory.mktemp("bad_input")
    _write_files(root / "files")
    result = runner.invoke(app, ["compose", "-q", "--input", str(root / "files" / "good.csv"),
                                 "--data-dir", str(root / "data"), "--dev-fraction", "0.2", "--test-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    return root


def store_entries(data: Path) -> set[str]:
    """What a failed command must not add: artifact dirs and leftovers (.tmp-*, .work-*; locks aside)."""
    if not data.is_dir():
        return set()
    return {p.relative_to(data).as_posix() for p in data.glob("*/*")
            if p.is_dir() and p.name != ".locks" and p.parent.name != ".cache"}


def _params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case: Case, prepared: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    data = tmp_path / "data"
    shutil.copytree(prepared / "data", data)
    monkeypatch.chdir(data)  # relative refs such as ../outside start inside the store
    monkeypatch.setenv("PIPE_LOG_DIR", str(tmp_path / "logs"))
    before = store_entries(data)
    args = [a.replace("{files}", str(prepared / "files")) for a in case.args]
    if case.quiet:
        args.insert(1, "-q")
    if not case.own_data_dir:
        args += ["--data-dir", str(data)]
    result = runner.invoke(app, args)
    shown = f"pipe {' '.join(args)}\nexit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{shown}\nraised {result.exception!r}"
    assert result.exit_code == 2, shown
    assert "Traceback" not in result.output, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert case.says in lines[0], shown
    assert store_entries(data) == before, shown
    assert not (tmp_path / "logs").exists(), f"{shown}\nan unexpected error was logged as a crash"
