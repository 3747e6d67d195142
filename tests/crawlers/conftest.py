"""Crawler fixtures: a real local HTTP server (threaded), fast HTTP settings, a crawl config maker."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pipe_embed.crawlers.http import HttpSettings
from pipe_embed.crawlers.stage import CrawlConfig
from tests.crawlers.raw_server import RawServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wikipedia"
FAST = {"rate_limit": 0.0, "timeout": 5.0, "retries": 2, "backoff": 0.01, "max_wait": 5.0}


@pytest.fixture(scope="session")
def _threaded_server() -> Iterator[HTTPServer]:
    srv = HTTPServer(host="127.0.0.1", threaded=True)
    srv.start()
    yield srv
    if srv.is_running():
        srv.stop()


@pytest.fixture()
def server(_threaded_server: HTTPServer) -> Iterator[HTTPServer]:
    """A threaded local HTTP server (a slow handler does not block the next request), cleared per test."""
    _threaded_server.clear()
    yield _threaded_server
    _threaded_server.clear()


@pytest.fixture()
def raw_server() -> Iterator[RawServer]:
    """A raw-socket loopback server whose answers stall, drip or cut the body short on cue."""
    srv = RawServer()
    yield srv
    srv.close()


@pytest.fixture()
def fast_settings() -> HttpSettings:
    """Polite-client settings with no pacing and tiny backoffs, so tests stay fast."""
    return HttpSettings(**FAST)


@pytest.fixture()
def make_config(tmp_path: Path) -> Callable[..., CrawlConfig]:
    """Build a CrawlConfig with fast HTTP settings and a cache in tmp."""

    def make(**values: Any) -> CrawlConfig:
        merged = {**FAST, "cache_dir": str(tmp_path / "http-cache"), **values}
        return CrawlConfig(**merged)

    return make


def etag_handler(body: bytes, counter: dict[str, int], content_type: str = "text/html; charset=utf-8"
                 ) -> Callable[[Request], Response]:
    """A handler that serves `body` with an ETag, answers 304 to a matching If-None-Match, and counts."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    def handle(request: Request) -> Response:
        if request.headers.get("If-None-Match") == etag:
            counter["304"] = counter.get("304", 0) + 1
            return Response(status=304, headers={"ETag": etag})
        counter["200"] = counter.get("200", 0) + 1
        return Response(body, status=200, headers={"ETag": etag, "Content-Type": content_type})

    return handle


def serve_robots(server: HTTPServer, text: str | None = None) -> None:
    """robots.txt: the given rules, or a 404 (no restrictions)."""
    if text is None:
        server.expect_request("/robots.txt").respond_with_data("not found", status=404)
    else:
        server.expect_request("/robots.txt").respond_with_data(text, content_type="text/plain")


def base_url(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")
