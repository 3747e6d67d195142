"""A polite HTTP client for crawling: identifies itself, obeys robots.txt, paces itself, retries, caches.

- a descriptive User-Agent; robots.txt honoured per RFC 9309 (4xx: allowed, unreachable: not);
- at most `rate_limit` requests per second per host (default 1), every request counted;
- a timeout on every read and a deadline on each whole request (headers and body): a body that
  stalls, drips or is cut short is retried like a 5xx; retries with exponential backoff on 429, 5xx,
  timeouts and connection errors, waiting what a Retry-After header says when it says so; a host
  name that does not resolve is not retried;
- an on-disk response cache revalidated with If-None-Match / If-Modified-Since, so a re-crawl
  downloads nothing that has not changed (a 304 serves the cached bytes);
- only the hosts it was configured with, redirects included; a maximum response size.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import socket
import time
import urllib.robotparser
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from pipe_embed.pipeline import __version__

DEFAULT_USER_AGENT = (f"pipe-embed/{__version__} (glossary crawler for embedding fine-tuning; "
                      f"https://pypi.org/project/pipe-embed/) python-requests/{requests.__version__}")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Failures that say the host (or the way to it) is down rather than anything about one page.
NETWORK_KINDS = frozenset({"dns", "connection", "timeout", "incomplete", "deadline"})
# Failures of the request itself (it could not be sent as given): never blamed on robots.txt.
CLIENT_KINDS = frozenset({"request", "bad-url"})
DEADLINE_FACTOR = 4  # the default deadline of one request, in timeouts
READ_CHUNK = 65536


@dataclass
class HttpSettings:
    """How politely and persistently to fetch."""

    user_agent: str = DEFAULT_USER_AGENT
    rate_limit: float = 1.0
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 1.0
    max_wait: float = 120.0
    max_bytes: int = 20 * 1024 * 1024
    respect_robots: bool = True
    max_redirects: int = 5
    deadline: float = 0.0  # seconds for one request, headers and body; 0 = DEADLINE_FACTOR x timeout

    @property
    def request_deadline(self) -> float:
        """Seconds one request may take from sending it to its last body byte."""
        return self.deadline if self.deadline > 0 else DEADLINE_FACTOR * self.timeout


class FetchError(Exception):
    """A page could not be fetched; `kind` is a short stable class of the failure."""

    def __init__(self, url: str, reason: str, *, kind: str, status: int | None = None,
                 attempts: int = 0) -> None:
        url, reason = strip_userinfo(url), redact_urls(reason)  # what is shown or recorded holds no password
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.kind = kind
        self.status = status
        self.attempts = attempts


class _Retry(Exception):
    """One attempt failed in a way worth another try (5xx, timeout, a cut or stalled body)."""

    def __init__(self, reason: str, kind: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


@dataclass
class Response:
    """A fetched body: fresh (200) or served from the cache after a 304."""

    url: str
    status: int
    content: bytes
    content_type: str
    from_cache: bool
    attempts: int
    sha256: str

    @property
    def bytes(self) -> int:
        return len(self.content)


@dataclass
class _Reply:
    """What one GET ended with after retries and redirects: status, headers, the whole body of a 200."""

    url: str
    status: int
    headers: requests.structures.CaseInsensitiveDict
    body: bytes
    attempts: int


@dataclass
class ClientStats:
    """What the client did on the wire."""

    requests: int = 0
    downloads: int = 0
    not_modified: int = 0
    retries: int = 0
    broken_bodies: int = 0
    bytes_downloaded: int = 0
    robots_blocked: int = 0
    waits: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "downloads": self.downloads, "not_modified": self.not_modified,
                "retries": self.retries, "broken_bodies": self.broken_bodies,
                "bytes_downloaded": self.bytes_downloaded, "robots_blocked": self.robots_blocked,
                "seconds_waited": round(sum(self.waits), 3)}
class ResponseCache:
    """Bodies and validators (ETag, Last-Modified) on disk, one pair of files per URL."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(strip_userinfo(url).encode("utf-8")).hexdigest()
        folder = self.root / key[:2]
        return folder / f"{key}.json", folder / f"{key}.body"

    def get(self, url: str) -> tuple[dict[str, Any], bytes] | None:
        """(metadata, body) for a URL, or None when absent or damaged."""
        meta_path, body_path = self._paths(url)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            body = body_path.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("url") != strip_userinfo(url) or hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            return None
        return meta, body

    def put(self, url: str, headers: requests.structures.CaseInsensitiveDict, body: bytes) -> None:
        """Store a 200 response atomically (body first, then the metadata that vouches for it)."""
        meta_path, body_path = self._paths(url)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "url": strip_userinfo(url),
            "etag": headers.get("ETag"),
            "last_modified": headers.get("Last-Modified"),
            "content_type": headers.get("Content-Type", ""),
            "sha256": hashlib.sha256(body).hexdigest(),
            "bytes": len(body),
            "fetched": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        for path, data in ((body_path, body), (meta_path, json.dumps(meta, indent=1).encode("utf-8"))):
            tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
            tmp.write_bytes(data)
            os.replace(tmp, path)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_USERINFO_ANYWHERE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)(?:[^/?#\s@]*@)+")


def strip_userinfo(url: str) -> str:
    """A URL without its `user:password@` part: credentials are sent, never written to a file or cache."""
    return _USERINFO.sub(r"\1", url)


def redact_urls(text: str) -> str:
    """Text with the `user:password@` part of every URL in it removed."""
    return _USERINFO_ANYWHERE.sub(r"\1", text)


def netloc(url: str) -> str:
    """host[:port] of a URL, lower-cased, without any `user:password@`."""
    return urlsplit(url).netloc.rpartition("@")[2].lower()


def _declared_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket a streamed response reads from (urllib3 2), or None when it cannot be reached."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if hasattr(sock, "settimeout") else None


class PoliteClient:
    """Fetches URLs of the allowed hosts with rate limit, robots.txt, retries and a revalidated cache."""

    def __init__(self, settings: HttpSettings | None = None, *, allowed_hosts: set[str] | None = None,
                 cache_dir: str | Path | None = None, sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None) -> None:
        self.settings = settings or HttpSettings()
        self.allowed_hosts = {h.lower() for h in (allowed_hosts or set())}
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = self.settings.user_agent
        self.stats = ClientStats()
        self._last_request: dict[str, float] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser | FetchError] = {}

    def close(self) -> None:
        self.session.close()

    # -- pacing ---------------------------------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.waits.append(seconds)
            self.sleep(seconds)

    def _pace(self, host: str) -> None:
        """Sleep until this host may get its next request."""
        rate = self.settings.rate_limit
        if rate > 0 and host in self._last_request:
            self._wait(self._last_request[host] + 1.0 / rate - time.monotonic())
        self._last_request[host] = time.monotonic()

    # -- the wire -------------------------------------------------------------------------------
    def _check_host(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(url, f"unsupported scheme '{parts.scheme}'", kind="bad-url")
        if self.allowed_hosts and netloc(url) not in self.allowed_hosts:
            raise FetchError(strip_userinfo(url), f"host {netloc(url)} is not one of the configured sources' hosts",
                             kind="host-not-allowed")

    def _read_body(self, url: str, response: requests.Response, deadline_at: float) -> bytes:
        """The whole body of a streamed response within the request's deadline (closes the response).

        Reads whatever has arrived (read1), so a server dripping bytes cannot outlast the deadline,
        and no read waits longer than the timeout; a stalled, dripping or cut body raises _Retry.
        """
        settings = self.settings
        limit = settings.max_bytes
        declared = _declared_length(response)
        sock = _socket_of(response)
        chunks: list[bytes] = []
        size = 0
        wait = settings.timeout

        def received() -> str:  # bytes off the wire (compressed, like Content-Length)
            wire = response.raw.tell() if hasattr(response.raw, "tell") else size
            return f"{wire:,} of {declared:,} bytes" if declared is not None else f"{wire:,} bytes"

        def too_slow() -> _Retry:
            return _Retry(f"body not complete within the {settings.request_deadline:g}-second deadline "
                          f"({received()} received)", kind="deadline")

        try:
            if declared is not None and declared > limit:
                raise FetchError(url, f"response of {declared} bytes is over the {limit}-byte limit",
                                 kind="too-large", status=response.status_code)
            while True:
                remaining = deadline_at - time.monotonic()
                if remaining <= 0:
                    raise too_slow()
                wait = min(settings.timeout, remaining)
                if sock is not None:
                    sock.settimeout(wait)
                chunk = response.raw.read1(READ_CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise FetchError(url, f"response is over the {limit}-byte limit", kind="too-large",
                                     status=response.status_code)
                chunks.append(chunk)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            if wait < settings.timeout:
                raise too_slow() from None
            raise _Retry(f"body stalled: nothing for {wait:g} s after {received()}", kind="timeout") from None
        except urllib3.exceptions.DecodeError as exc:
            raise FetchError(url, f"cannot decode the body ({_short(exc)})", kind="bad-encoding",
                             status=response.status_code) from None
        except (urllib3.exceptions.HTTPError, OSError):
            raise _Retry(f"connection closed after {received()}", kind="incomplete") from None
        finally:
            if sock is not None:
                try:
                    sock.settimeout(settings.timeout)  # a kept-alive connection starts afresh
                except OSError:
                    pass
            response.close()
        return b"".join(chunks)

    def _attempt(self, url: str, headers: dict[str, str]) -> tuple[requests.Response, bytes]:
        """One GET, no retries: the (closed) response and, for a 200, its whole body."""
        settings = self.settings
        deadline_at = time.monotonic() + settings.request_deadline
        try:
            response = self.session.get(url, headers=headers, timeout=settings.timeout, stream=True,
                                        allow_redirects=False)
        except requests.Timeout:
            raise _Retry(f"timed out after {settings.timeout:g} s", kind="timeout") from None
        except requests.ConnectionError as exc:
            message, kind = describe_connection_error(exc)
            if kind == "dns":
                raise FetchError(url, message, kind=kind) from None
            raise _Retry(f"connection failed: {message}", kind=kind) from None
        except requests.RequestException as exc:
            raise FetchError(url, f"request failed ({_short(exc)})", kind="request") from None
        status = response.status_code
        if status in RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            raise _Retry(f"HTTP {status}", kind=f"http-{status}", status=status, retry_after=retry_after)
        if status != 200:
            response.close()
            return response, b""
        try:
            return response, self._read_body(url, response, deadline_at)
        except _Retry:
            self.stats.broken_bodies += 1
            raise

    def _backoff(self, attempt: int, retry_after: float | None, url: str, reason: str) -> None:
        """Wait before the next attempt: Retry-After when given, else exponential backoff."""
        if retry_after is not None:
            if retry_after > self.settings.max_wait:
                raise FetchError(url, f"{reason}; the server asks to retry after {retry_after:.0f} s, "
                                 f"more than max_wait ({self.settings.max_wait:.0f} s)",
                                 kind="retry-after-too-long", attempts=attempt)
            delay = retry_after
        else:
            delay = min(self.settings.backoff * (2 ** (attempt - 1)), self.settings.max_wait)
        self.stats.retries += 1
        self._wait(delay)

    def _request(self, url: str, headers: dict[str, str]) -> _Reply:
        """One GET with retries and host-checked redirects, the body of a 200 read in full."""
        attempts = 0
        redirects = 0
        current = url
        while True:
            self._check_host(current)
            attempts += 1
            self._pace(netloc(current))
            self.stats.requests += 1
            try:
                response, body = self._attempt(current, headers)
            except _Retry as failure:
                if attempts > self.settings.retries:
                    raise FetchError(current, f"gave up after {attempts} attempts: {failure.reason}",
                                     kind=failure.kind, status=failure.status, attempts=attempts) from None
                self._backoff(attempts, failure.retry_after, current, failure.reason)
                continue
            except FetchError as exc:
                exc.attempts = attempts
                raise
            status = response.status_code
            if status in REDIRECT_STATUSES and response.headers.get("Location"):
                redirects += 1
                if redirects > self.settings.max_redirects:
                    raise FetchError(url, f"more than {self.settings.max_redirects} redirects",
                                     kind="redirects", status=status, attempts=attempts)
                current = urljoin(current, response.headers["Location"])
                attempts -= 1  # a redirect is not a failed attempt
                continue
            return _Reply(url=current, status=status, headers=response.headers, body=body, attempts=attempts)

    # -- robots.txt -----------------------------------------------------------------------------
    def _robots_for(self, url: str) -> urllib.robotparser.RobotFileParser | FetchError:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{netloc(url)}"
        if key in self._robots:
            return self._robots[key]
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"  # with any credentials, to fetch it
        parser = urllib.robotparser.RobotFileParser(robots_url)
        result: urllib.robotparser.RobotFileParser | FetchError = parser
        try:
            reply = self._request(robots_url, {})
            if reply.status == 200:
                parser.parse(reply.body.decode("utf-8", "replace").splitlines())
            elif 400 <= reply.status < 500:
                parser.allow_all = True  # type: ignore[attr-defined]  # RobotFileParser sets it at run time; RFC 9309: no robots.txt, no restrictions
            else:
                parser.disallow_all = True  # type: ignore[attr-defined]  # RobotFileParser sets it at run time
        except FetchError as exc:
            if exc.kind in NETWORK_KINDS or exc.kind in CLIENT_KINDS:
                result = exc  # the host is unreachable, or the request itself is bad: say so, not robots
            elif exc.kind in ("host-not-allowed", "redirects"):
                parser.allow_all = True  # type: ignore[attr-defined]  # set at run time; RFC 9309: robots.txt redirected away counts as unavailable
            else:  # RFC 9309: a server error on robots.txt means fully disallowed
                parser.disallow_all = True  # type: ignore[attr-defined]  # RobotFileParser sets it at run time
        self._robots[key] = result
        return result

    def allowed_by_robots(self, url: str) -> bool:
        """Whether robots.txt lets this client fetch the URL (raises when the host is unreachable).

        An unreachable host is tried once per client: its later pages fail at once, with no attempt.
        """
        if not self.settings.respect_robots:
            return True
        known = f"{urlsplit(url).scheme}://{netloc(url)}" in self._robots
        robots = self._robots_for(url)
        if isinstance(robots, FetchError):
            raise FetchError(url, robots.reason, kind=robots.kind, attempts=0 if known else robots.attempts)
        return robots.can_fetch(self.settings.user_agent, url)

    # -- public ---------------------------------------------------------------------------------
    def get(self, url: str) -> Response:
        """GET a URL politely; a cached copy is revalidated and reused on 304."""
        self._check_host(url)
        if not self.allowed_by_robots(url):
            self.stats.robots_blocked += 1
            raise FetchError(url, "disallowed by robots.txt", kind="robots")
        cached = self.cache.get(url) if self.cache is not None else None
        headers: dict[str, str] = {}
        if cached is not None:
            meta = cached[0]
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
        reply = self._request(url, headers)
        if reply.status == 304 and cached is not None:
            self.stats.not_modified += 1
            meta, body = cached
            return Response(url=reply.url, status=304, content=body, content_type=meta.get("content_type", ""),
                            from_cache=True, attempts=reply.attempts, sha256=meta["sha256"])
        if reply.status != 200:
            raise FetchError(reply.url, f"HTTP {reply.status}", kind=f"http-{reply.status}", status=reply.status,
                             attempts=reply.attempts)
        body = reply.body
        self.stats.downloads += 1
        self.stats.bytes_downloaded += len(body)
        if self.cache is not None:
            self.cache.put(url, reply.headers, body)
        return Response(url=reply.url, status=200, content=body,
                        content_type=reply.headers.get("Content-Type", ""), from_cache=False,
                        attempts=reply.attempts, sha256=hashlib.sha256(body).hexdigest())


_CONNECTION_PREFIX = re.compile(r"^(?:<[^>]*>|\w+\(host='[^']*', port=\d+\)):\s*")


def _innermost(exc: BaseException) -> BaseException:
    """The deepest error requests/urllib3 wrapped (ConnectionError -> MaxRetryError -> its reason)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        if inner is None:
            break
        exc = inner
    return exc


def describe_connection_error(exc: BaseException) -> tuple[str, str]:
    """(a short message, a kind) for a failed connection: 'dns' when the host name did not resolve.

    requests nests reprs several levels deep; the message keeps urllib3's innermost sentence, e.g.
    "Failed to resolve 'en.wikipedia.org' ([Errno -2] Name or service not known)".
    """
    inner = _innermost(exc)
    resolution_error = getattr(urllib3.exceptions, "NameResolutionError", ())
    chain: list[BaseException] = []
    node: BaseException | None = inner
    while node is not None and node not in chain:
        chain.append(node)
        node = node.__cause__ or node.__context__
    dns = (resolution_error and isinstance(inner, resolution_error)) or any(
        isinstance(e, socket.gaierror) for e in chain)
    message = _CONNECTION_PREFIX.sub("", _short(inner))
    return message, "dns" if dns else "connection"


def _short(exc: BaseException, limit: int = 200) -> str:
    """An exception's last line; a longer one keeps its informative end, cut at a word."""
    text = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    return "…" + (tail.split(" ", 1)[1] if " " in tail else tail)
