"""The crawl stage end to end against a local server: artifact files, faults, cache hits, dry run."""

from __future__ import annotations

import csv
import json
import socket
import time
from pathlib import Path

import pytest

from pipe_embed.crawlers.stage import COLUMNS, GLOSSARY_FILE, PAGES_FILE, run_crawl
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from tests.crawlers.conftest import FIXTURES, base_url, etag_handler, serve_robots

CHESS = (FIXTURES / "glossary_of_chess.html").read_bytes()
SLANG = (FIXTURES / "glossary_of_2020s_slang.html").read_bytes()
PROSE = b"<html><head><title>Prose</title></head><body><p>No lists here.</p></body></html>"


def read_rows(artifact) -> list[dict[str, str]]:
    with open(artifact.file(GLOSSARY_FILE), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_pages(artifact) -> dict[str, dict]:
    lines = artifact.file(PAGES_FILE).read_text(encoding="utf-8").splitlines()
    return {record["page"]: record for record in map(json.loads, lines)}


def no_leftovers(store) -> bool:
    """Nothing half-written: no artifact and no temporary directory under the crawl stage."""
    stage_dir = store.stage_dir("crawl")
    return store.versions("crawl") == [] and not any(p.name.startswith(".tmp") for p in stage_dir.glob(".*")) \
        if stage_dir.exists() else True


@pytest.fixture()
def wiki(server):
    """The two saved glossaries served at /wiki/<Title> with ETags; returns the download counters."""
    serve_robots(server)
    counters = {"chess": {}, "slang": {}}
    server.expect_request("/wiki/Glossary_of_chess").respond_with_handler(etag_handler(CHESS, counters["chess"]))
    server.expect_request("/wiki/Glossary_of_2020s_slang").respond_with_handler(
        etag_handler(SLANG, counters["slang"]))
    return counters


def test_crawl_two_pages_then_cache_hit(store, server, wiki, make_config):
    config = make_config(pages=["Glossary of chess", "Glossary of 2020s slang"], base_url=base_url(server))
    first = run_crawl(store, config)
    assert not first.cached
    rows = read_rows(first.artifact)
    assert list(rows[0]) == list(COLUMNS)
    chess = [r for r in rows if r["page"] == "Glossary of chess"]
    assert len(chess) == 616 and len({r["term"] for r in chess}) == 604
    assert len([r for r in rows if r["page"] == "Glossary of 2020s slang"]) == 159
    pin = next(r for r in chess if r["term"] == "absolute pin")
    assert pin["url"] == "https://en.wikipedia.org/wiki/Glossary_of_chess#absolute_pin"
    assert (pin["section"], pin["revision"], pin["license"], pin["source"]) == (
        "A", "1069916166", "CC BY-SA 3.0", "wikipedia_glossary")
    assert next(r for r in chess if r["term"] == "time pressure")["aliases"] == "time trouble"

    pages = read_pages(first.artifact)
    record = pages["Glossary of chess"]
    assert (record["status"], record["bytes"], record["entries"], record["terms"]) == (200, len(CHESS), 616, 604)
    assert record["dropped"] == {"image-only definition": 6}
    assert len(record["sha256"]) == 64
    assert first.artifact.manifest["headline"]["rows"] == 775

    second = run_crawl(store, config)  # unchanged pages: 304s, no download, same version
    assert second.cached and second.artifact.version == first.artifact.version
    assert wiki == {"chess": {"200": 1, "304": 1}, "slang": {"200": 1, "304": 1}}


def test_changed_page_gives_a_new_version(store, server, make_config):
    serve_robots(server)
    server.expect_oneshot_request("/wiki/Glossary_of_chess").respond_with_data(CHESS, content_type="text/html")
    changed = CHESS.replace(b"absolute pin </dfn>", b"absolute pin </dfn>").replace(
        b"Suspension of a chess game", b"Interruption of a chess game")
    server.expect_oneshot_request("/wiki/Glossary_of_chess").respond_with_data(changed, content_type="text/html")
    config = make_config(pages=["Glossary of chess"], base_url=base_url(server))
    first = run_crawl(store, config)
    second = run_crawl(store, config)
    assert not second.cached and second.artifact.version != first.artifact.version
    adjourn = next(r for r in read_rows(second.artifact) if r["term"] == "adjournment")
    assert adjourn["definition"].startswith("Interruption of a chess game")


def test_faulty_pages_are_skipped_and_others_go_on(store, server, wiki, make_config, capsys):
    server.expect_request("/wiki/Prose_page").respond_with_data(PROSE, content_type="text/html")
    server.expect_request("/wiki/A_pdf").respond_with_data(b"%PDF-1.4", content_type="application/pdf")
    server.expect_request("/wiki/Gone").respond_with_data("", status=404)
    server.expect_request("/wiki/Cut_short").respond_with_data(
        SLANG[:SLANG.index(b"An impactful telling") + 40], content_type="text/html")  # inside 'truth nuke'

    config = make_config(pages=["Glossary of chess", "Prose page", "A pdf", "Gone", "Cut short"],
                         base_url=base_url(server))
    outcome = run_crawl(store, config)
    pages = read_pages(outcome.artifact)
    assert pages["Glossary of chess"]["entries"] == 616
    assert pages["Prose page"]["entries"] == 0
    assert any("no glossary markup" in w for w in pages["Prose page"]["warnings"])
    assert pages["A pdf"]["error"] == "not HTML (Content-Type: application/pdf)"
    assert pages["Gone"]["status"] == 404 and pages["Gone"]["error_kind"] == "http-404"
    assert 100 < pages["Cut short"]["entries"] < 159
    assert pages["Cut short"]["dropped"]["cut off by truncation"] == 1
    assert any("truncated" in w for w in pages["Cut short"]["warnings"])
    stats = outcome.artifact.stats
    assert (stats["pages"], stats["pages_failed"], stats["pages_empty"]) == (5, 2, 1)
    err = capsys.readouterr().err
    assert "Prose page" in err and "A pdf" in err and "Gone" in err


def test_every_page_failed_is_an_error_and_writes_nothing(store, server, make_config):
    serve_robots(server)
    server.expect_request("/wiki/Down").respond_with_data("", status=500)
    server.expect_request("/wiki/Missing").respond_with_data("", status=404)
    config = make_config(pages=["Down", "Missing"], base_url=base_url(server), retries=1)
    with pytest.raises(PipeError) as caught:
        run_crawl(store, config)
    message = caught.value.line()
    assert "every page failed (2)" in message
    assert "Down: gave up after 2 attempts: HTTP 500" in message and "Missing: HTTP 404" in message
    assert no_leftovers(store)


def test_no_entries_anywhere_is_an_error(store, server, make_config):
    serve_robots(server)
    server.expect_request("/wiki/Prose").respond_with_data(PROSE, content_type="text/html")
    with pytest.raises(PipeError, match="no glossary entries"):
        run_crawl(store, make_config(pages=["Prose"], base_url=base_url(server)))
    assert no_leftovers(store)


def test_robots_disallowed_page_is_reported(store, server, make_config):
    serve_robots(server, "User-agent: *\nDisallow: /wiki/Glossary_of_2020s_slang\n")
    server.expect_request("/wiki/Glossary_of_chess").respond_with_data(CHESS, content_type="text/html")
    config = make_config(pages=["Glossary of chess", "Glossary of 2020s slang"], base_url=base_url(server))
    pages = read_pages(run_crawl(store, config).artifact)
    assert pages["Glossary of 2020s slang"]["error"] == "disallowed by robots.txt"
    assert not [r for r, _ in server.log if "slang" in r.path]


def test_limit_per_source(store, server, wiki, make_config):
    config = make_config(pages=["Glossary of chess"], base_url=base_url(server), limit_per_source=50)
    outcome = run_crawl(store, config)
    assert len(read_rows(outcome.artifact)) == 50
    assert read_pages(outcome.artifact)["Glossary of chess"]["dropped"]["over limit_per_source"] == 566


def test_dry_run_is_offline(store, make_config):
    outcome = run_crawl(store, make_config(dry_run=True))
    rows = read_rows(outcome.artifact)
    assert len(rows) == 616
    assert rows[0]["url"] == "https://en.wikipedia.org/wiki/Glossary_of_chess#absolute_pin"
    assert outcome.artifact.stats.get("http") is None  # no client, no request


def test_dry_run_unknown_page(store, make_config):
    with pytest.raises(PipeError, match="no bundled sample for 'Glossary of physics'"):
        run_crawl(store, make_config(dry_run=True, pages=["Glossary of physics"]))


def test_unknown_source_is_a_config_error(make_config):
    with pytest.raises(ConfigError, match="unknown source 'wikipedia'"):
        make_config(sources=["wikipedia"]).validate()


def test_html_source_reads_saved_pages(store, make_config, tmp_path: Path):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "chess.html").write_bytes(CHESS)
    (folder / "notes.html").write_bytes(b"plain text, not a page")
    outcome = run_crawl(store, make_config(sources=["html"], inputs=[str(folder)]))
    pages = read_pages(outcome.artifact)
    assert pages["chess.html"]["entries"] == 616
    assert pages["notes.html"]["error_kind"] == "not-html"


def test_rerun_after_a_failure_fetches_only_what_is_missing(store, server, make_config):
    serve_robots(server)
    counter: dict[str, int] = {}
    server.expect_request("/wiki/Glossary_of_chess").respond_with_handler(etag_handler(CHESS, counter))
    server.expect_oneshot_request("/wiki/Glossary_of_2020s_slang").respond_with_data("", status=503)
    server.expect_oneshot_request("/wiki/Glossary_of_2020s_slang").respond_with_data(SLANG, content_type="text/html")
    config = make_config(pages=["Glossary of chess", "Glossary of 2020s slang"], base_url=base_url(server), retries=0)
    first = run_crawl(store, config)
    assert first.artifact.stats["pages_failed"] == 1
    second = run_crawl(store, config)  # the page that failed is fetched, the other one only revalidated
    assert not second.cached and second.artifact.stats["pages_failed"] == 0
    assert counter == {"200": 1, "304": 1}
    assert second.artifact.manifest["headline"]["rows"] == 775


@pytest.fixture()
def no_dns(monkeypatch):
    """Every name but the loopback's fails to resolve, as on a machine without network."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_offline_crawl_is_one_short_error(store, make_config, no_dns, capsys):
    config = make_config(rate_limit=1.0, retries=4, backoff=1.0)  # the defaults: 26 pages of en.wikipedia.org
    started = time.monotonic()
    with pytest.raises(PipeError) as caught:
        run_crawl(store, config)
    assert time.monotonic() - started < 5  # a name that does not resolve is not retried
    assert caught.value.message == "could not reach en.wikipedia.org for any of 26 pages (name resolution failed)"
    assert "--dry-run" in caught.value.hint and "--base-url" in caught.value.hint
    err = capsys.readouterr().err
    assert "fetched 0 of 26 pages, 26 failed; 1 request" in err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [("warning: Glossary of computer science: skipped — "
                         "Failed to resolve 'en.wikipedia.org' ([Errno -2] Name or service not known)")]
    assert no_leftovers(store)


def test_unreachable_mirror_names_the_host(store, make_config):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = make_config(pages=["Glossary of chess", "Glossary of 2020s slang"], base_url=f"http://127.0.0.1:{port}",
                         retries=1)
    with pytest.raises(PipeError) as caught:
        run_crawl(store, config)
    assert caught.value.message == f"could not reach 127.0.0.1:{port} for any of 2 pages (connection refused)"
    assert len(caught.value.line()) < 250


def test_some_pages_of_a_down_host_warn_once(store, server, wiki, make_config, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = make_config(sources=["wikipedia_glossary", "url"], pages=["Glossary of chess"], base_url=base_url(server),
                         urls=[f"{down}/a", f"{down}/b", f"{down}/c"], retries=0)
    outcome = run_crawl(store, config)
    assert outcome.artifact.stats["pages_failed"] == 3
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if line.startswith("warning:") and "/a: skipped" in line]) == 1
    assert f"{down[7:]}: 2 more pages skipped for the same reason" in err
    assert "fetched 1 of 4 pages (1 downloaded, 0 unchanged), 3 failed" in err


def test_limit_per_source_stops_fetching(store, server, wiki, make_config):
    pages = ["Glossary of chess", "Glossary of 2020s slang"]
    small = run_crawl(store, make_config(pages=pages, base_url=base_url(server), limit_per_source=50))
    assert len(read_rows(small.artifact)) == 50
    assert wiki["slang"] == {}  # the chess page alone held 50 rows: the slang page was never asked for
    assert small.artifact.stats["pages_not_fetched"] == 1
    assert list(read_pages(small.artifact)) == ["Glossary of chess"]

    large = run_crawl(store, make_config(pages=pages, base_url=base_url(server), limit_per_source=700))
    assert len(read_rows(large.artifact)) == 700  # 616 chess rows and 84 of slang
    assert wiki == {"chess": {"200": 1, "304": 1}, "slang": {"200": 1}}
    assert large.artifact.stats["pages_not_fetched"] == 0


def test_credentials_in_the_base_url_never_reach_the_disk(store, server, wiki, make_config, tmp_path: Path):
    mirror = base_url(server).replace("http://", "http://reader:s3cret-pw@")
    config = make_config(pages=["Glossary of chess"], base_url=mirror)
    artifact = run_crawl(store, config).artifact
    assert artifact.config["base_url"] == base_url(server)
    assert read_pages(artifact)["Glossary of chess"]["url"] == f"{base_url(server)}/wiki/Glossary_of_chess"
    written = [p for root in (store.root, tmp_path / "http-cache") for p in root.rglob("*") if p.is_file()]
    assert any(p.name == GLOSSARY_FILE for p in written) and any(p.suffix == ".body" for p in written)
    for path in written:
        data = path.read_bytes()
        assert b"s3cret-pw" not in data and b"reader:" not in data, path


@pytest.mark.parametrize("field, value, says", [
    ("max_wait", float("inf"), "field 'max_wait': inf is out of range (0 to 3600 seconds)"),
    ("max_wait", 7200.0, "field 'max_wait': 7200.0 is out of range"),
    ("timeout", float("nan"), "field 'timeout': nan is out of range (more than 0 and at most 3600 seconds)"),
    ("timeout", 0.0, "field 'timeout': 0.0 is out of range"),
    ("backoff", -1.0, "field 'backoff': -1.0 is out of range"),
    ("deadline", float("inf"), "field 'deadline': inf is out of range"),
    ("rate_limit", float("-inf"), "field 'rate_limit': -inf is out of range"),
    ("user_agent", "bot\r\nX-Injected: 1", "field 'user_agent': holds a control character ('\\r' at position 4)"),
    ("user_agent", "bot\tone", "field 'user_agent': holds a control character"),
    ("user_agent", "  ", "field 'user_agent': is empty"),
    ("user_agent", "bot \u2603", "cannot be sent in an HTTP header"),
])
def test_settings_no_crawl_can_use_are_refused(make_config, field: str, value, says: str):
    with pytest.raises(ConfigError) as caught:
        make_config(**{field: value}).validate()
    assert says in caught.value.line()


def test_a_cache_dir_that_is_a_file_is_one_line(store, make_config, tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    config = make_config(sources=["url"], urls=["http://127.0.0.1:9/page"], selectors="term=dt; definition=dd",
                         cache_dir=str(afile))
    with pytest.raises(PipeError, match="afile: the HTTP cache dir is a file, not a directory"):
        run_crawl(store, config)
    assert no_leftovers(store)
