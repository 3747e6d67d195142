"""The polite client against real local servers: retries, Retry-After, timeouts, robots, cache, broken bodies."""

from __future__ import annotations

import gzip
import socket
import time
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path

import pytest
from werkzeug import Request, Response

from pipe_embed.crawlers.http import FetchError, PoliteClient, netloc, parse_retry_after
from tests.crawlers import raw_server as raw
from tests.crawlers.conftest import etag_handler, serve_robots

PAGE = b"<html><body><dl><dt>term</dt><dd>definition</dd></dl></body></html>"


class Sleeps:
    """Records every wait the client asks for (and really sleeps, briefly)."""

    def __init__(self, real: bool = True) -> None:
        self.waits: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            time.sleep(seconds)


def client_for(server, settings, tmp_path: Path | None = None, sleep=None) -> PoliteClient:
    return PoliteClient(settings, allowed_hosts={netloc(server.url_for("/"))},
                        cache_dir=tmp_path / "cache" if tmp_path else None, sleep=sleep or Sleeps())


def hits(server, path: str) -> list[int]:
    """Status codes the server sent for a path, in order."""
    return [response.status_code for request, response in server.log if request.path == path]


def test_retry_after_429_then_200(server, fast_settings):
    serve_robots(server)
    server.expect_oneshot_request("/page").respond_with_data("slow down", status=429, headers={"Retry-After": "1"})
    server.expect_oneshot_request("/page").respond_with_data(PAGE, content_type="text/html")
    sleeps = Sleeps()
    client = client_for(server, fast_settings, sleep=sleeps)
    response = client.get(server.url_for("/page"))
    assert response.status == 200 and response.content == PAGE
    assert response.attempts == 2
    assert sleeps.waits == [1.0]  # the stated wait, not the (tiny) exponential backoff
    assert hits(server, "/page") == [429, 200]


def test_retry_after_as_http_date():
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None


def test_retry_after_longer_than_max_wait_gives_up(server, fast_settings):
    serve_robots(server)
    server.expect_request("/page").respond_with_data("", status=503, headers={"Retry-After": "3600"})
    client = client_for(server, fast_settings)
    with pytest.raises(FetchError) as caught:
        client.get(server.url_for("/page"))
    assert caught.value.kind == "retry-after-too-long"
    assert hits(server, "/page") == [503]


def test_persistent_500_exhausts_retries(server, fast_settings):
    serve_robots(server)
    server.expect_request("/page").respond_with_data("boom", status=500)
    sleeps = Sleeps(real=False)
    client = client_for(server, replace(fast_settings, retries=3, backoff=0.5), sleep=sleeps)
    with pytest.raises(FetchError) as caught:
        client.get(server.url_for("/page"))
    assert caught.value.kind == "http-500"
    assert caught.value.attempts == 4
    assert "gave up after 4 attempts: HTTP 500" in caught.value.reason
    assert hits(server, "/page") == [500, 500, 500, 500]
    assert sleeps.waits == [0.5, 1.0, 2.0]  # exponential backoff


def test_timeout_is_retried_then_reported(server, fast_settings):
    serve_robots(server)

    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response(PAGE, content_type="text/html")

    server.expect_request("/slow").respond_with_handler(slow)
    client = client_for(server, replace(fast_settings, timeout=0.2, retries=1))
    with pytest.raises(FetchError) as caught:
        client.get(server.url_for("/slow"))
    assert caught.value.kind == "timeout"
    assert caught.value.attempts == 2
    assert client.stats.retries == 1


def test_connection_refused_is_reported(fast_settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/page"
    client = PoliteClient(replace(fast_settings, retries=1), allowed_hosts={f"127.0.0.1:{port}"}, sleep=Sleeps(False))
    with pytest.raises(FetchError) as caught:
        client.get(url)
    assert caught.value.kind == "connection"
    assert caught.value.reason.endswith("Failed to establish a new connection: [Errno 111] Connection refused")
    assert caught.value.reason.startswith("gave up after 2 attempts: connection failed: ")


def test_robots_disallow_is_respected(server, fast_settings):
    serve_robots(server, "User-agent: *\nDisallow: /private/\n")
    server.expect_request("/private/page").respond_with_data(PAGE, content_type="text/html")
    server.expect_request("/public").respond_with_data(PAGE, content_type="text/html")
    client = client_for(server, fast_settings)
    with pytest.raises(FetchError) as caught:
        client.get(server.url_for("/private/page"))
    assert caught.value.kind == "robots"
    assert hits(server, "/private/page") == []  # never asked
    assert client.get(server.url_for("/public")).status == 200
    assert hits(server, "/robots.txt") == [200]  # read once per host


def test_robots_unavailable_means_disallowed(server, fast_settings):
    server.expect_request("/robots.txt").respond_with_data("down", status=503)
    client = client_for(server, replace(fast_settings, retries=0))
    with pytest.raises(FetchError) as caught:
        client.get(server.url_for("/page"))
    assert caught.value.kind == "robots"


def test_second_fetch_revalidates_with_etag(server, fast_settings, tmp_path):
    serve_robots(server)
    counter: dict[str, int] = {}
    server.expect_request("/page").respond_with_handler(etag_handler(PAGE, counter))
    first = client_for(server, fast_settings, tmp_path).get(server.url_for("/page"))
    second_client = client_for(server, fast_settings, tmp_path)
    second = second_client.get(server.url_for("/page"))
    assert (first.status, first.from_cache) == (200, False)
    assert (second.status, second.from_cache) == (304, True)
    assert second.content == PAGE and second.sha256 == first.sha256
    assert counter == {"200": 1, "304": 1}
    assert second_client.stats.downloads == 0 and second_client.stats.bytes_downloaded == 0


def test_revalidates_with_last_modified(server, fast_settings, tmp_path):
    serve_robots(server)
    stamp = formatdate(time.time() - 3600, usegmt=True)

    def handle(request: Request) -> Response:
        if request.headers.get("If-Modified-Since") == stamp:
            return Response(status=304)
        return Response(PAGE, content_type="text/html", headers={"Last-Modified": stamp})

    server.expect_request("/page").respond_with_handler(handle)
    client_for(server, fast_settings, tmp_path).get(server.url_for("/page"))
    again = client_for(server, fast_settings, tmp_path).get(server.url_for("/page"))
    assert again.from_cache and again.content == PAGE
    assert hits(server, "/page") == [200, 304]


def test_changed_page_is_downloaded_again(server, fast_settings, tmp_path):
    serve_robots(server)
    counter: dict[str, int] = {}
    server.expect_oneshot_request("/page").respond_with_handler(etag_handler(PAGE, counter))
    server.expect_oneshot_request("/page").respond_with_handler(etag_handler(PAGE + b"<!-- v2 -->", counter))
    client_for(server, fast_settings, tmp_path).get(server.url_for("/page"))
    again = client_for(server, fast_settings, tmp_path).get(server.url_for("/page"))
    assert (again.status, again.from_cache) == (200, False)
    assert again.content.endswith(b"<!-- v2 -->")


def test_only_configured_hosts(server, fast_settings):
    serve_robots(server)
    server.expect_request("/away").respond_with_data("", status=302, headers={"Location": "http://example.com/x"})
    client = client_for(server, fast_settings)
    with pytest.raises(FetchError) as caught:
        client.get("http://example.com/page")
    assert caught.value.kind == "host-not-allowed"
    with pytest.raises(FetchError) as caught:
        client.get(server.url_for("/away"))  # a redirect off the allowed hosts is refused
    assert caught.value.kind == "host-not-allowed"


def test_max_response_size(server, fast_settings):
    serve_robots(server)
    server.expect_request("/big").respond_with_data(b"x" * 5000, content_type="text/html")
    client = client_for(server, replace(fast_settings, max_bytes=1000))
    with pytest.raises(FetchError) as caught:
        client.get(server.url_for("/big"))
    assert caught.value.kind == "too-large"


def test_rate_limit_paces_requests_per_host(server, fast_settings):
    serve_robots(server)
    server.expect_request("/page").respond_with_data(PAGE, content_type="text/html")
    sleeps = Sleeps(real=False)
    client = client_for(server, replace(fast_settings, rate_limit=2.0), sleep=sleeps)
    client.get(server.url_for("/page"))  # robots.txt, then the page: the page waits its turn
    assert len(sleeps.waits) == 1 and 0 < sleeps.waits[0] <= 0.5


def test_user_agent_is_descriptive(server, fast_settings):
    serve_robots(server)
    server.expect_request("/page").respond_with_data(PAGE, content_type="text/html")
    client_for(server, fast_settings).get(server.url_for("/page"))
    agents = {request.headers.get("User-Agent") for request, _ in server.log}
    assert len(agents) == 1 and agents.pop().startswith("pipe-embed/")


# -- bodies that stall, drip or are cut short (a raw-socket server) ---------------------------------
BODY = PAGE * 20  # 1,340 bytes


def raw_client(raw_server, settings, sleep=None) -> PoliteClient:
    raw_server.on("/robots.txt", raw.status(404, "Not Found"))
    return PoliteClient(settings, allowed_hosts={raw_server.host}, sleep=sleep or Sleeps(real=False))


def test_cut_body_is_retried_like_a_5xx(raw_server, fast_settings):
    raw_server.on("/page", raw.cut(BODY, 100), raw.full(BODY))
    sleeps = Sleeps(real=False)
    client = raw_client(raw_server, replace(fast_settings, backoff=0.5), sleeps)
    response = client.get(raw_server.url("/page"))
    assert response.content == BODY and response.attempts == 2
    assert (client.stats.retries, client.stats.broken_bodies, client.stats.downloads) == (1, 1, 1)
    assert sleeps.waits == [0.5]  # backed off as after a 5xx
    assert raw_server.count("/page") == 2


def test_cut_body_gives_up_with_a_one_line_reason(raw_server, fast_settings):
    raw_server.on("/page", raw.cut(BODY, 100))
    client = raw_client(raw_server, replace(fast_settings, retries=2))
    with pytest.raises(FetchError) as caught:
        client.get(raw_server.url("/page"))
    error = caught.value
    assert (error.kind, error.attempts) == ("incomplete", 3)
    assert error.reason == "gave up after 3 attempts: connection closed after 100 of 1,340 bytes"
    assert str(error) == f"{raw_server.url('/page')}: {error.reason}"  # names the page, one line
    assert client.stats.broken_bodies == 3 and raw_server.count("/page") == 3


def test_cut_chunked_body_is_retried(raw_server, fast_settings):
    raw_server.on("/page", raw.cut_chunked(BODY, 300), raw.full(BODY))
    client = raw_client(raw_server, fast_settings)
    response = client.get(raw_server.url("/page"))
    assert response.content == BODY and response.attempts == 2


def test_stalled_body_times_out_and_is_retried(raw_server, fast_settings):
    raw_server.on("/page", raw.stall(BODY, 100, seconds=30))
    client = raw_client(raw_server, replace(fast_settings, timeout=0.2, retries=1))
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        client.get(raw_server.url("/page"))
    assert time.monotonic() - started < 3
    assert caught.value.kind == "timeout" and caught.value.attempts == 2
    assert caught.value.reason == "gave up after 2 attempts: body stalled: nothing for 0.2 s after 100 of 1,340 bytes"
    assert client.stats.retries == 1 and client.stats.broken_bodies == 2


def test_dripping_body_is_cut_off_at_the_deadline(raw_server, fast_settings):
    # One byte every 0.05 s: every read returns well within the 1 s timeout, so only the
    # deadline ends it (the whole body would take over a minute).
    raw_server.on("/page", raw.drip(BODY, every=0.05))
    client = raw_client(raw_server, replace(fast_settings, timeout=1.0, deadline=0.5, retries=1))
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        client.get(raw_server.url("/page"))
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3  # two attempts of about 0.5 s each
    assert caught.value.kind == "deadline" and caught.value.attempts == 2
    assert "body not complete within the 0.5-second deadline" in caught.value.reason
    assert raw_server.count("/page") == 2


def test_deadline_defaults_to_a_few_timeouts(fast_settings):
    assert replace(fast_settings, timeout=2.0).request_deadline == 8.0
    assert replace(fast_settings, timeout=2.0, deadline=3.0).request_deadline == 3.0


def test_unresolvable_host_fails_at_once_with_a_short_reason(monkeypatch, fast_settings):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "glossary.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    sleeps = Sleeps(real=False)
    client = PoliteClient(fast_settings, allowed_hosts={"glossary.invalid"}, sleep=sleeps)
    with pytest.raises(FetchError) as first:
        client.get("http://glossary.invalid/wiki/A")
    assert first.value.kind == "dns" and first.value.attempts == 1
    assert first.value.reason == "Failed to resolve 'glossary.invalid' ([Errno -2] Name or service not known)"
    with pytest.raises(FetchError) as second:
        client.get("http://glossary.invalid/wiki/B")  # the host is known to be unreachable: no new request
    assert second.value.reason == first.value.reason and second.value.attempts == 0
    assert client.stats.requests == 1 and sleeps.waits == []  # a name that does not resolve is not retried


def test_gzip_body_is_decoded(server, fast_settings):
    serve_robots(server)
    server.expect_request("/page").respond_with_data(gzip.compress(BODY), content_type="text/html",
                                                     headers={"Content-Encoding": "gzip"})
    response = client_for(server, fast_settings).get(server.url_for("/page"))
    assert response.content == BODY


def test_a_request_that_cannot_be_sent_is_not_blamed_on_robots(server, fast_settings):
    serve_robots(server)
    client = client_for(server, replace(fast_settings, user_agent="bot\r\nX-Injected: 1"))
    with pytest.raises(FetchError) as caught:
        client.get(server.url_for("/page"))
    assert caught.value.kind == "request" and "robots" not in caught.value.reason
    assert hits(server, "/robots.txt") == []  # nothing went out


def test_credentials_are_sent_but_never_cached(server, fast_settings, tmp_path):
    from pipe_embed.crawlers.http import strip_userinfo

    serve_robots(server)
    server.expect_request("/page").respond_with_data(PAGE, content_type="text/html")
    url = server.url_for("/page").replace("http://", "http://user:s3cret@")
    assert strip_userinfo(url) == server.url_for("/page") and netloc(url) == netloc(server.url_for("/"))
    client = client_for(server, fast_settings, tmp_path)
    assert client.get(url).content == PAGE
    page_request = next(request for request, _ in server.log if request.path == "/page")
    assert page_request.authorization is not None and page_request.authorization.password == "s3cret"
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path
    assert client.cache.get(server.url_for("/page")) is not None  # keyed by the address without credentials
