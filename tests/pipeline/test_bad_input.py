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
from typer.testing import CliRunner

from pipe_embed.pipeline.cli import app

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


# -- crawl ranges, store integrity, read-only and full disks, messages printed as written -----------

MORE_CASES = [
    Case("crawl-max-wait-inf", ("crawl", "--dry-run", "--max-wait", "inf"), "field 'max_wait'"),
    Case("crawl-max-wait-too-long", ("crawl", "--dry-run", "--max-wait", "99999"),
         "field 'max_wait': 99999.0 is out of range (0 to 3600 seconds)"),
    Case("crawl-cache-dir-is-a-file", ("crawl", "--sources", "url", "--urls", "http://127.0.0.1:9/page",
                                       "--selectors", "term=dt; definition=dd", "--cache-dir", "{files}/afile"),
         "afile: the HTTP cache dir is a file, not a directory"),
    Case("crawl-user-agent-line-break", ("crawl", "--dry-run", "--user-agent", "bot\r\nX-Injected: 1"),
         "field 'user_agent': holds a control character"),
    Case("compose-anchor-col-is-positive-col", ("compose", "--input", "{files}/good.csv", "--anchor-col", "term",
                                                "--positive-col", "term"),
         "fields 'anchor_col' and 'positive_col': both name the column 'term'"),
    Case("compose-emoji-code-in-a-file-name", ("compose", "--input", "{files}/x:x:y.csv"),
         "x:x:y.csv: input file not found"),
    Case("compose-data-dir-empty", ("compose", "--input", "{files}/good.csv", "--data-dir", ""),
         "--data-dir is empty", own_data_dir=True),
    Case("mine-from-missing-path", ("mine", "--method", "bm25", "--from", "{files}/in/x"),
         "in/x: no such file or directory"),
    Case("mine-from-a-directory", ("mine", "--method", "bm25", "--from", "{files}/adir"),
         "adir: a directory outside the data dir"),
    Case("mine-from-not-a-pairs-file", ("mine", "--method", "bm25", "--from", "{files}/g.xlsx"),
         "g.xlsx: not a pairs file (.xlsx)"),
    Case("report-bins-zero", ("report", "--bins", "0"), "field 'bins': 0 is out of range"),
    Case("ls-unknown-stage", ("ls", "bogus"), "unknown stage 'bogus' — known stages: crawl, compose", quiet=False),
    Case("ls-data-dir-empty", ("ls", "--data-dir", ""), "--data-dir is empty", own_data_dir=True, quiet=False),
    Case("gc-data-dir-empty", ("gc", "--data-dir", ""), "--data-dir is empty", own_data_dir=True, quiet=False),
    Case("root-data-dir-empty", ("--data-dir", "", "ls"), "'--data-dir': must not be empty", own_data_dir=True,
         quiet=False),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in MORE_CASES])
def test_more_bad_input_is_one_line_exit_2_and_writes_nothing(case: Case, prepared: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    test_bad_input_is_one_line_exit_2_and_writes_nothing(case, prepared, tmp_path, monkeypatch)


def _store_copy(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    shutil.copytree(prepared / "data", data)
    monkeypatch.setenv("PIPE_LOG_DIR", str(tmp_path / "logs"))
    return data


def _one_error_line(result, says: str, data: Path, before: set[str], tmp_path: Path) -> None:
    shown = f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exit_code == 2 and "Traceback" not in result.output, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], shown
    assert store_entries(data) == before, shown
    assert not (tmp_path / "logs").exists(), shown


def test_a_read_only_store_serves_cache_hits_and_refuses_new_work_in_one_line(prepared: Path, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    from tests.pipeline.read_only import refuse_writes

    data = _store_copy(prepared, tmp_path, monkeypatch)
    before = store_entries(data)
    refuse_writes(monkeypatch, data)
    same = ["compose", "-q", "--input", str(prepared / "files" / "good.csv"), "--data-dir", str(data),
            "--dev-fraction", "0.2", "--test-fraction", "0.2"]
    hit = runner.invoke(app, same)
    assert hit.exit_code == 0 and hit.stdout.startswith("compose@"), hit.output
    for args in ([*same, "--seed", "5"], ["mine", "-q", "--method", "bm25", "--data-dir", str(data)],
                 ["crawl", "-q", "--dry-run", "--data-dir", str(data)]):
        _one_error_line(runner.invoke(app, args), "the data dir is read-only", data, before, tmp_path)


def test_a_full_disk_is_one_line_and_leaves_nothing(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import errno

    from pipe_embed.pipeline.cli import compose as compose_cmd
    from pipe_embed.pipeline.compose import stage

    data = _store_copy(prepared, tmp_path, monkeypatch)
    before = store_entries(data)

    def full(path, rows):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(stage, "write_jsonl", full)
    args = ["compose", "-q", "--input", str(prepared / "files" / "good.csv"), "--data-dir", str(data), "--seed", "7"]
    _one_error_line(runner.invoke(app, args), "No space left on device — the disk is full", data, before, tmp_path)

    def elsewhere(*args, **kwargs):  # a full disk outside the store (a cache, a log): the same one line
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "x"))

    monkeypatch.setattr(compose_cmd, "run_compose", elsewhere)
    _one_error_line(runner.invoke(app, args), "cache/x: No space left on device", data, before, tmp_path)


def test_a_tampered_input_artifact_is_refused_in_one_line(prepared: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    data = _store_copy(prepared, tmp_path, monkeypatch)
    [pairs] = data.glob("compose/*/pairs.jsonl")
    pairs.write_text(pairs.read_text().replace("Definition number 1 ", "Definition number 9 ", 1))
    before = store_entries(data)
    result = runner.invoke(app, ["mine", "-q", "--method", "bm25", "--data-dir", str(data)])
    _one_error_line(result, "pairs.jsonl does not match the sha256 its manifest lists", data, before, tmp_path)


# -- mining methods' own settings: bm25's ranges and languages, a setting outside its table, iterate's first miner --

METHOD_CASES = [
    Case("mine-stopwords-unknown", ("mine", "--method", "bm25", "--stopwords", "klingon"),
         "field 'stopwords': no stopword list for 'klingon'"),
    Case("mine-stemmer-unknown", ("mine", "--method", "bm25", "--stemmer", "klingon"),
         "field 'stemmer': PyStemmer has no stemmer for 'klingon'"),
    Case("mine-k1-negative", ("mine", "--method", "bm25", "--k1", "-1"), "field 'k1': must be >= 0"),
    Case("mine-b-above-one", ("mine", "--method", "bm25", "--b", "5"), "field 'b': must be between 0 and 1"),
    Case("mine-method-setting-outside-its-table", ("mine", "--config", "{files}/mine_flat_k1.toml"),
         "[mine] unknown field 'k1': it is a setting of [mine.bm25]"),
    Case("iterate-first-unknown", ("iterate", "--first", "bm52", "--model", "{files}/bogus_model"),
         "field 'first': 'bm52' is neither in-batch nor a mining method"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in METHOD_CASES])
def test_bad_method_settings_are_one_line_exit_2_and_write_nothing(case: Case, prepared: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch):
    (prepared / "files" / "mine_flat_k1.toml").write_text('[mine]\nmethod = "bm25"\nk1 = 0.9\n')
    test_bad_input_is_one_line_exit_2_and_writes_nothing(case, prepared, tmp_path, monkeypatch)


# -- train: ranges, a loss's settings, runs that cannot learn or diverge, export and data paths, eval splits --

TRAIN_CASES = [
    Case("train-lr-inf", ("train", "--lr", "inf", "--max-steps", "2"), "field 'lr'"),
    Case("train-lr-zero", ("train", "--lr", "0"), "field 'lr': must be > 0"),
    Case("train-temperature-zero", ("train", "--temperature", "0"), "field 'temperature': must be > 0"),
    Case("train-mini-batch-size-zero", ("train", "--loss", "cached-mnrl", "--mini-batch-size", "0"),
         "field 'mini_batch_size': must be >= 1"),
    Case("train-unknown-loss", ("train", "--loss", "gits"), "unknown loss 'gits' — did you mean 'gist'?"),
    Case("train-guide-model-outside-its-table", ("train", "--config", "{files}/train_flat_guide.toml"),
         "[train] unknown field 'guide_model': it is a setting of [train.gist]"),
    Case("train-old-dtype-in-a-file", ("train", "--config", "{files}/train_old_dtype.toml"),
         "[train] field 'dtype' is now 'precision'"),
    Case("train-dtype-and-precision", ("train", "--dtype", "bfloat16", "--precision", "f32"),
         "--dtype is the old name of --precision"),
    Case("train-fp16-on-cpu", ("train", "--precision", "fp16", "--device", "cpu"),
         "field 'precision': fp16 autocast needs a CUDA GPU"),
    Case("train-loss-goes-nan", ("train", "--from", "compose@latest", "--model", "{files}/tiny/tiny-model", "--lr",
                                 "1e30", "--max-steps", "3", "--warmup-ratio", "0", "--device", "cpu"),
         "— lower --lr (it is 1e+30)"),
    Case("train-weights-overflow", ("train", "--from", "compose@latest", "--model", "{files}/tiny/tiny-model", "--lr",
                                    "1e30", "--max-steps", "2", "--device", "cpu"),
         "— lower --lr (it is 1e+30)"),
    Case("train-cannot-take-a-step", ("train", "--from", "compose@latest", "--model", "{files}/bogus_model",
                                      "--batch-size", "100000", "--min-steps", "0"),
         "this run cannot learn: 1 optimizer step"),
    Case("train-export-dir-is-a-file", ("train", "--from", "compose@latest", "--model", "{files}/bogus_model",
                                        "--export-dir", "{files}/afile"),
         "field 'export_dir': "),
    Case("train-pairs-path-and-from", ("train", "--from", "compose@latest", "--pairs-path", "{files}/wrong.jsonl",
                                       "--model", "{files}/bogus_model"),
         "give --from or --pairs-path, not both"),
    Case("eval-split-without-queries", ("eval", "--data-dir", "{files}/nodev_data", "--model", "{files}/bogus_model",
                                        "--data", "compose@latest"),
         "the dev split has no query with a relevant document", own_data_dir=True),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in TRAIN_CASES])
def test_bad_training_input_is_one_line_exit_2_and_writes_nothing(case: Case, prepared: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch):
    files = prepared / "files"
    (files / "train_flat_guide.toml").write_text('[train]\nloss = "gist"\nguide_model = "x"\n')
    (files / "train_old_dtype.toml").write_text('[train]\ndtype = "bfloat16"\n')
    if not (files / "tiny").is_dir():  # a model that really trains, for the runs that diverge
        from tests.tiny_model import build_tiny_model

        build_tiny_model(files / "tiny")
    if not (files / "nodev_data").is_dir():  # data composed with no dev and no test split
        result = runner.invoke(app, ["compose", "-q", "--input", str(files / "good.csv"), "--data-dir",
                                     str(files / "nodev_data"), "--dev-fraction", "0", "--test-fraction", "0"])
        assert result.exit_code == 0, result.output
    test_bad_input_is_one_line_exit_2_and_writes_nothing(case, prepared, tmp_path, monkeypatch)


def _float_options() -> list[tuple[str, str]]:
    """(command, flag) for every float option of every command, read from the CLI itself, so a new
    float setting (a method's or a loss's too) is covered without being listed here."""
    import typer

    group = typer.main.get_command(app)
    found = []
    for name, command in sorted(group.commands.items()):  # type: ignore[attr-defined]  # a click Group
        for param in command.params:  # every config float is shown as FLOAT (pipeline/cli/options.py)
            if getattr(param, "metavar", None) == "FLOAT" and getattr(param, "opts", None):
                found.append((name, max(param.opts, key=len)))
    return found


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(("command", "flag"), _float_options())
def test_every_float_option_refuses_nan_and_inf(command: str, flag: str, value: str, prepared: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    data = _store_copy(prepared, tmp_path, monkeypatch)
    before = store_entries(data)
    result = runner.invoke(app, [command, "-q", "--data-dir", str(data), f"{flag}={value}"])
    _one_error_line(result, "is not a finite number", data, before, tmp_path)


def test_the_float_sweep_sees_every_command_with_float_settings():
    commands = {command for command, _ in _float_options()}
    assert {"crawl", "compose", "mine", "train", "iterate", "sweep"} <= commands
    assert ("mine", "--k1") in _float_options() and ("train", "--lr") in _float_options()
