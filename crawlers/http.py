"""A polite HTTP client for crawling: identifies itself, obeys robots.txt, paces itself, retries, caches.

- a descriptive User-Agent; robots.txt honoured per RFC 9309 (4xx: allowed, unreachable: not);
- at most `rate_limit` requests per second per host (default 1), every request counted;
- timeouts; retries with exponential backoff on 429, 5xx, timeouts and connection errors, waiting
  what a Retry-After header says (seconds or HTTP date) when it says so;
- an on-disk response cache revalidated with If-None-Match / If-Modified-Since, so a re-crawl
  downloads nothing that has not changed (a 304 serves the cached bytes);
- only the hosts it was configured with, redirects included; a maximum response size.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import time
import urllib.robotparser
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from pipe_embed.pipeline import __version__

DEFAULT_USER_AGENT = (f"pipe-embed/{__version__} (glossary crawler for embedding fine-tuning; "
                      f"https://pypi.org/project/pipe-embed/) python-requests/{requests.__version__}")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


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


class FetchError(Exception):
    """A page could not be fetched; `kind` is a short stable class of the failure."""

    def __init__(self, url: str, reason: str, *, kind: str, status: int | None = None,
                 attempts: int = 0) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.kind = kind
        self.status = status
        self.attempts = attempts


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
class ClientStats:
    """What the client did on the wire."""

    requests: int = 0
    downloads: int = 0
    not_modified: int = 0
    retries: int = 0
    bytes_downloaded: int = 0
    robots_blocked: int = 0
    waits: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "downloads": self.downloads, "not_modified": self.not_modified,
                "retries": self.retries, "bytes_downloaded": self.bytes_downloaded,
                "robots_blocked": self.robots_blocked, "seconds_waited": round(sum(self.waits), 3)}


class ResponseCache:
    """Bodies and validators (ETag, Last-Modified) on disk, one pair of files per URL."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
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
        if meta.get("url") != url or hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            return None
        return meta, body

    def put(self, url: str, headers: requests.structures.CaseInsensitiveDict, body: bytes) -> None:
        """Store a 200 response atomically (body first, then the metadata that vouches for it)."""
        meta_path, body_path = self._paths(url)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "url": url,
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


def netloc(url: str) -> str:
    """host[:port] of a URL, lower-cased."""
    return urlsplit(url).netloc.lower()


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
        if self.allowed_hosts and parts.netloc.lower() not in self.allowed_hosts:
            raise FetchError(url, f"host {parts.netloc} is not one of the configured sources' hosts",
                             kind="host-not-allowed")

    def _read_body(self, url: str, response: requests.Response) -> bytes:
        limit = self.settings.max_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            response.close()
            raise FetchError(url, f"response of {declared} bytes is over the {limit}-byte limit",
                             kind="too-large", status=response.status_code)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > limit:
                response.close()
                raise FetchError(url, f"response is over the {limit}-byte limit", kind="too-large",
                                 status=response.status_code)
            chunks.append(chunk)
        return b"".join(chunks)

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

    def _request(self, url: str, headers: dict[str, str]) -> tuple[requests.Response, int, str]:
        """One GET with retries and host-checked redirects; returns (response, attempts, final url)."""
        attempts = 0
        redirects = 0
        current = url
        last_reason = ""
        last_status: int | None = None
        while True:
            self._check_host(current)
            attempts += 1
            self._pace(netloc(current))
            self.stats.requests += 1
            retry_after: float | None = None
            try:
                response = self.session.get(current, headers=headers, timeout=self.settings.timeout,
                                            stream=True, allow_redirects=False)
            except requests.Timeout:
                last_reason, last_status, kind = f"timed out after {self.settings.timeout:g} s", None, "timeout"
            except requests.ConnectionError as exc:
                last_reason, last_status, kind = f"connection failed ({_short(exc)})", None, "connection"
            except requests.RequestException as exc:
                raise FetchError(current, f"request failed ({_short(exc)})", kind="request",
                                 attempts=attempts) from None
            else:
                status = response.status_code
                if status in REDIRECT_STATUSES and response.headers.get("Location"):
                    response.close()
                    redirects += 1
                    if redirects > self.settings.max_redirects:
                        raise FetchError(url, f"more than {self.settings.max_redirects} redirects",
                                         kind="redirects", status=status, attempts=attempts)
                    current = urljoin(current, response.headers["Location"])
                    attempts -= 1  # a redirect is not a failed attempt
                    continue
                if status not in RETRY_STATUSES:
                    return response, attempts, current
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                response.close()
                last_reason, last_status, kind = f"HTTP {status}", status, f"http-{status}"
            if attempts > self.settings.retries:
                raise FetchError(current, f"gave up after {attempts} attempts: {last_reason}", kind=kind,
                                 status=last_status, attempts=attempts)
            self._backoff(attempts, retry_after, current, last_reason)

    # -- robots.txt -----------------------------------------------------------------------------
    def _robots_for(self, url: str) -> urllib.robotparser.RobotFileParser | FetchError:
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc.lower()}"
        if key in self._robots:
            return self._robots[key]
        robots_url = f"{key}/robots.txt"
        parser = urllib.robotparser.RobotFileParser(robots_url)
        result: urllib.robotparser.RobotFileParser | FetchError = parser
        try:
            response, _, _ = self._request(robots_url, {})
            status = response.status_code
            if status == 200:
                body = self._read_body(robots_url, response)
                parser.parse(body.decode("utf-8", "replace").splitlines())
            elif 400 <= status < 500:
                response.close()
                parser.allow_all = True  # RFC 9309: no robots.txt means no restrictions
            else:
                response.close()
                parser.disallow_all = True
        except FetchError as exc:
            if exc.kind in ("timeout", "connection"):
                result = exc  # the host is unreachable: report that rather than robots
            elif exc.kind in ("host-not-allowed", "redirects"):
                parser.allow_all = True  # RFC 9309: robots.txt redirected away counts as unavailable
            else:  # RFC 9309: a server error on robots.txt means fully disallowed
                parser.disallow_all = True
        self._robots[key] = result
        return result

    def allowed_by_robots(self, url: str) -> bool:
        """Whether robots.txt lets this client fetch the URL (raises when the host is unreachable)."""
        if not self.settings.respect_robots:
            return True
        robots = self._robots_for(url)
        if isinstance(robots, FetchError):
            raise FetchError(url, robots.reason, kind=robots.kind, attempts=robots.attempts)
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
        response, attempts, final_url = self._request(url, headers)
        status = response.status_code
        if status == 304 and cached is not None:
            response.close()
            self.stats.not_modified += 1
            meta, body = cached
            return Response(url=final_url, status=304, content=body, content_type=meta.get("content_type", ""),
                            from_cache=True, attempts=attempts, sha256=meta["sha256"])
        if status != 200:
            response.close()
            raise FetchError(final_url, f"HTTP {status}", kind=f"http-{status}", status=status,
                             attempts=attempts)
        body = self._read_body(final_url, response)
        self.stats.downloads += 1
        self.stats.bytes_downloaded += len(body)
        if self.cache is not None:
            self.cache.put(url, response.headers, body)
        return Response(url=final_url, status=200, content=body,
                        content_type=response.headers.get("Content-Type", ""), from_cache=False,
                        attempts=attempts, sha256=hashlib.sha256(body).hexdigest())


def _short(exc: BaseException) -> str:
    """The last line of an exception's text, trimmed: requests nests long reprs."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text[-160:]
