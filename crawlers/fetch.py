"""Getting the crawl's pages: fetch or read each one, stop a source once its rows are in, sum up failures.

Failures are recorded on the page, never raised; a host that cannot be reached is warned about once,
and when no page at all could be had `no_page_error` says why in one line.
"""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipe_embed.crawlers.base import PageRef, ParsedPage, Source
from pipe_embed.crawlers.config import CrawlConfig
from pipe_embed.crawlers.htmltext import looks_like_html
from pipe_embed.crawlers.http import NETWORK_KINDS, FetchError, PoliteClient, netloc, strip_userinfo
from pipe_embed.pipeline.core.console import debug, progress_bar, warn
from pipe_embed.pipeline.core.errors import PipeError

# How a network failure reads in a summary, by kind.
KIND_WORDS = {"dns": "name resolution failed", "connection": "connection failed", "timeout": "timed out",
              "incomplete": "connection broke off mid-page", "deadline": "too slow to answer in full"}
# Network failures that never got an answer (the others got part of one).
UNREACHED_KINDS = frozenset({"dns", "connection", "timeout"})
# Sources whose pages have a bundled snapshot (--dry-run) and a mirror option (--base-url).
SNAPSHOT_SOURCES = ("wikipedia_glossary",)


@dataclass
class Fetched:
    """One page's bytes (or why there are none) and its provenance."""

    source: Source
    ref: PageRef
    status: int | str = ""
    content: bytes | None = None
    parsed: ParsedPage | None = None
    sha256: str = ""
    content_type: str = ""
    from_cache: bool = False
    error: str = ""
    kind: str = ""
    attempts: int = 0
    size: int = 0

    @property
    def ok(self) -> bool:
        return not self.error and self.status != ""

    @property
    def host(self) -> str:
        """host[:port] of a network page, "" for a local one."""
        return "" if self.ref.local else netloc(self.ref.location)

    @property
    def unreachable(self) -> bool:
        """Whether the page failed because its host could not be reached (not for anything it said)."""
        return bool(self.error) and self.kind in NETWORK_KINDS and not self.ref.local

    def provenance(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": self.ref.source, "page": self.ref.page,
                                  "url": strip_userinfo(self.ref.location),
                                  "status": self.status, "bytes": self.size,
                                  "sha256": self.sha256, "from_cache": self.from_cache}
        if self.content_type:
            record["content_type"] = self.content_type
        if self.attempts:
            record["attempts"] = self.attempts
        if self.error:
            record["error"] = self.error
            record["error_kind"] = self.kind
        return record


_GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream", "text/plain", "application/unknown")


def is_html_response(content_type: str, content: bytes) -> bool:
    """HTML by its declared type, or, for a generic type (octet-stream, text/plain), by its bytes."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        return True
    return kind in _GENERIC_TYPES and looks_like_html(content)


def fetch_page(client: PoliteClient | None, source: Source, ref: PageRef) -> Fetched:
    """Read one page from disk or the network; failures are recorded, never raised."""
    fetched = Fetched(source=source, ref=ref)
    if ref.local:
        path = Path(ref.location)
        try:
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            fetched.error, fetched.kind, fetched.status = f"cannot read ({exc})", "read", "unreadable"
            return fetched
        fetched.status = "file"
        if source.needs_html and not looks_like_html(data):
            fetched.error, fetched.kind = "not HTML (the file does not start like an HTML page)", "not-html"
            fetched.sha256, fetched.size = hashlib.sha256(data).hexdigest(), len(data)
            return fetched
        fetched.content, fetched.sha256, fetched.size = data, hashlib.sha256(data).hexdigest(), len(data)
        return fetched
    assert client is not None
    try:
        response = client.get(ref.location)
    except FetchError as exc:
        fetched.error, fetched.kind = exc.reason, exc.kind
        fetched.status = exc.status if exc.status is not None else exc.kind
        fetched.attempts = exc.attempts
        return fetched
    fetched.status, fetched.content_type = response.status, response.content_type
    fetched.from_cache, fetched.attempts, fetched.sha256 = response.from_cache, response.attempts, response.sha256
    fetched.size = len(response.content)
    if source.needs_html and not is_html_response(response.content_type, response.content):
        fetched.error = f"not HTML (Content-Type: {response.content_type or 'none'})"
        fetched.kind = "not-html"
        return fetched
    fetched.content = response.content
    return fetched


class RowCounter:
    """Distinct (term, definition) rows seen per source, to stop fetching a source at its limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._keys: dict[str, set[tuple[str, str]]] = {}

    def full(self, source: str) -> bool:
        return self.limit > 0 and len(self._keys.get(source, ())) >= self.limit

    def add(self, source: str, parsed: ParsedPage) -> None:
        keys = self._keys.setdefault(source, set())
        for entry in parsed.entries:
            if len(keys) >= self.limit:
                break
            keys.add((entry.term, entry.definition))


@dataclass
class FetchReport:
    """Every page tried, the pages left unfetched per source (its rows were in), failures not warned one by one."""

    pages: list[Fetched]
    not_fetched: Counter[str] = field(default_factory=Counter)
    repeated: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> list[Fetched]:
        return [f for f in self.pages if not f.ok]


def fetch_all(client: PoliteClient | None, planned: list[tuple[Source, PageRef]],
              config: CrawlConfig) -> FetchReport:
    """Fetch or read the planned pages in order, warning about failures (an unreachable host once).

    With `limit_per_source`, each page is parsed as it arrives and a source's remaining pages are not
    fetched once it has that many distinct rows.
    """
    report = FetchReport(pages=[])
    rows = RowCounter(config.limit_per_source)
    warned: set[tuple[str, str, str]] = set()
    with progress_bar("crawl: fetching pages", len(planned)) as advance:
        for source, ref in planned:
            if rows.full(ref.source):
                report.not_fetched[ref.source] += 1
                advance()
                continue
            item = fetch_page(client, source, ref)
            if item.ok and config.limit_per_source:
                item.parsed = source.parse(ref, item.content or b"", config)
                item.content = None
                rows.add(ref.source, item.parsed)
            if item.unreachable and (item.host, item.kind, item.error) in warned:
                report.repeated[item.host] += 1
                debug(f"{ref.page}: skipped — {item.error}")
            elif item.error:
                if item.unreachable:
                    warned.add((item.host, item.kind, item.error))
                warn(f"{ref.page}: skipped — {item.error}")
            else:
                debug(f"{ref.page}: {item.status}, {item.size} bytes"
                      + (" (unchanged, from cache)" if item.from_cache else ""))
            report.pages.append(item)
            advance()
    return report


def list_failures(failed: list[Fetched], limit: int = 3) -> str:
    """'page: reason; page: reason; … and N more' for the first few failed pages."""
    parts = [f"{f.ref.page}: {f.error}" for f in failed[:limit]]
    if len(failed) > limit:
        parts.append(f"… and {len(failed) - limit} more")
    return "; ".join(parts)


def _network_words(failed: list[Fetched]) -> str:
    words = []
    for f in failed:
        word = "connection refused" if f.kind == "connection" and "refused" in f.error.lower() \
            else KIND_WORDS.get(f.kind, f.kind)
        if word not in words:
            words.append(word)
    return ", ".join(words)


def no_page_error(failed: list[Fetched]) -> PipeError:
    """The one-line error of a crawl where every page failed: what failed, and what to try instead."""
    n = len(failed)
    snapshot = any(f.ref.source in SNAPSHOT_SOURCES for f in failed)
    if all(f.unreachable for f in failed):
        hosts = ", ".join(dict.fromkeys(f.host for f in failed))
        pages = "the page" if n == 1 else f"any of {n} pages"
        if all(f.kind in UNREACHED_KINDS for f in failed):
            message = f"could not reach {hosts} for {pages} ({_network_words(failed)})"
        else:
            message = f"could not fetch {pages} from {hosts} ({_network_words(failed)})"
        hint = ("nothing was written; use --dry-run to crawl the bundled snapshot offline, "
                "or --base-url URL to crawl a mirror") if snapshot else \
            "nothing was written; check the network and the addresses"
        if any(f.kind in ("timeout", "deadline") for f in failed):
            hint += "; a slow server needs a larger --timeout or --deadline"
        return PipeError(message, hint=hint)
    hint = "nothing was written; check the addresses and the network"
    if snapshot:
        hint += ", or use --dry-run for the bundled snapshot"
    return PipeError(f"every page failed ({n}): {list_failures(failed)}", hint=hint)


def summary_line(report: FetchReport, client: PoliteClient | None) -> str:
    """'fetched 3 of 5 pages (2 downloaded, 1 unchanged), 2 failed; 6 requests' and pages left out."""
    total = len(report.pages)
    failed = len(report.failed)
    line = f"fetched {total - failed} of {total} page{'s' if total != 1 else ''}"
    if client is not None:
        s = client.stats
        if s.downloads or s.not_modified:
            line += f" ({s.downloads} downloaded, {s.not_modified} unchanged)"
    if failed:
        line += f", {failed} failed"
    if client is not None:
        line += f"; {client.stats.requests} request{'s' if client.stats.requests != 1 else ''}"
        if client.stats.retries:
            line += f", {client.stats.retries} retried"
    for source, count in report.not_fetched.items():
        line += f"; {count} {source} page{'s' if count != 1 else ''} not fetched (limit_per_source reached)"
    return line
