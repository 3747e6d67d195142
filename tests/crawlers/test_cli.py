"""`pipe crawl` through typer's runner against a local server."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

from typer.testing import CliRunner

from pipe_embed.pipeline.cli import app
from tests.crawlers.conftest import FIXTURES, base_url, serve_robots

runner = CliRunner()
FAST = ["--rate-limit", "0", "--retries", "1", "--timeout", "5"]


def glossary_rows(data_dir: Path) -> list[dict[str, str]]:
    (path,) = data_dir.glob("crawl/*/glossary.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_crawl_chess_from_a_mirror(server, tmp_path: Path):
    serve_robots(server)
    server.expect_request("/wiki/Glossary_of_chess").respond_with_data(
        (FIXTURES / "glossary_of_chess.html").read_bytes(), content_type="text/html")
    data = tmp_path / "data"
    args = ["crawl", "--sources", "wikipedia_glossary", "--pages", "Glossary of chess",
            "--base-url", base_url(server), "--data-dir", str(data), *FAST]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("crawl@")
    rows = glossary_rows(data)
    assert len(rows) == 616 and len({r["term"] for r in rows}) == 604

    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert "up to date" in again.stderr
    assert again.stdout == result.stdout


def test_crawl_dry_run(tmp_path: Path):
    result = runner.invoke(app, ["crawl", "--dry-run", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert len(glossary_rows(tmp_path / "data")) == 616


def test_every_page_failed_exits_nonzero(server, tmp_path: Path):
    serve_robots(server)
    server.expect_request("/wiki/Nothing").respond_with_data("", status=404)
    result = runner.invoke(app, ["crawl", "--pages", "Nothing", "--base-url", base_url(server),
                                 "--data-dir", str(tmp_path / "data"), *FAST])
    assert result.exit_code == 2
    assert "every page failed (1): Nothing: HTTP 404" in result.stderr
    assert "Traceback" not in result.output
    assert not list((tmp_path / "data").glob("crawl/*/manifest.json"))


def test_unknown_source_exits_with_one_line(tmp_path: Path):
    result = runner.invoke(app, ["crawl", "--sources", "nope", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "unknown source 'nope'" in result.stderr


def test_config_file_section(tmp_path: Path):
    config = tmp_path / "pipe.toml"
    config.write_text('[crawl]\ndry_run = true\nlimit_per_source = 25\n')
    result = runner.invoke(app, ["crawl", "--config", str(config), "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert len(glossary_rows(tmp_path / "data")) == 25


def test_offline_crawl_exits_with_one_error_line(monkeypatch, tmp_path: Path):
    def getaddrinfo(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)  # a machine without network
    result = runner.invoke(app, ["crawl", "--sources", "wikipedia_glossary", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and len(errors[0]) < 250
    assert errors[0].startswith("error: could not reach en.wikipedia.org for any of 26 pages (name resolution failed)")
    assert "--dry-run" in errors[0]
    assert "fetched 0 of 26 pages" in result.stderr
    assert "Traceback" not in result.output and "aused by" not in result.output
    assert len(result.stderr) < 600
