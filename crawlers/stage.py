"""The crawl stage: fetch every source's pages, parse them, write one `crawl` artifact.

Files of the artifact:
- `glossary.csv`: term, definition, aliases (" | "-separated), section, source, page, url (with the
  term's #anchor), revision, license, anchor, pos — one row per definition (a term with several
  numbered definitions has several rows).
- `pages.jsonl`: one line per page: provenance (url, status, bytes, sha256, from_cache, revision)
  and stats (entries kept, terms, dropped by reason, warnings, or the error that skipped it).

Pages are fetched first (through the polite client and its cache), then the artifact's version is
fingerprinted from the output-relevant config plus each page's content hash (or failure kind): a
re-crawl whose pages all answer 304 or hash the same is a cache hit; any changed page is a new
version. Network settings (rate limit, timeouts, retries, cache dir) and local paths do not enter
the fingerprint; they are recorded in the manifest under `crawl_settings`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_embed.crawlers.base import PageRef, Source
from pipe_embed.crawlers.htmltext import looks_like_html
from pipe_embed.crawlers.http import (
    DEFAULT_USER_AGENT,
    FetchError,
    HttpSettings,
    PoliteClient,
    netloc,
)
from pipe_embed.crawlers.registry import get_source, source_names
from pipe_embed.pipeline.core.config import as_dict, option
from pipe_embed.pipeline.core.console import debug, info, progress_bar, warn
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.pairs import write_jsonl
from pipe_embed.pipeline.core.store import RunOutcome, StageResult, Store

STAGE = "crawl"
FORMAT_VERSION = 1
GLOSSARY_FILE = "glossary.csv"
PAGES_FILE = "pages.jsonl"
COLUMNS = ("term", "definition", "aliases", "section", "source", "page", "url", "revision", "license",
           "anchor", "pos")
ALIAS_SEPARATOR = " | "
# Settings that change how pages are fetched, not what the artifact holds.
OPERATIONAL = ("user_agent", "rate_limit", "timeout", "retries", "backoff", "max_wait", "max_bytes",
               "respect_robots", "cache_dir", "wordnet_dir", "inputs", "spec", "selectors")


@dataclass
class CrawlConfig:
    """Configuration of `pipe crawl`."""

    sources: list[str] = option(["wikipedia_glossary"], "sources to crawl: wikipedia_glossary, url, html, wordnet")
    pages: list[str] = option([], "wikipedia_glossary: page titles (default: the curated list of glossaries)")
    urls: list[str] = option([], "url: page addresses")
    inputs: list[str] = option([], "html: saved HTML files or directories", flag="--input")
    limit_per_source: int = option(0, "keep at most this many rows per source (0 = all)")
    lang: str = option("en", "wikipedia_glossary: language edition (en, de, fr, …)")
    base_url: str = option("", "wikipedia_glossary: a mirror serving the same /wiki/<Title> paths")
    dry_run: bool = option(False, "offline: wikipedia_glossary reads the bundled sample pages")
    wordnet_dir: str = option("", "wordnet: database directory (default $WORDNET_DIR or /usr/share/wordnet)")
    selectors: str = option("", "url/html: CSS selectors 'term=…; definition=…[; item=…][; section=…]'")
    spec: str = option("", "url/html: YAML selector spec (term, definition, item, section, urls, license)")
    license: str = option("", "url/html: licence of the pages' text")
    user_agent: str = option(DEFAULT_USER_AGENT, "User-Agent sent with every request")
    rate_limit: float = option(1.0, "requests per second per host (0 = unpaced)")
    timeout: float = option(30.0, "seconds to wait for a server before retrying")
    retries: int = option(4, "retries on 429, 5xx, timeouts and connection errors")
    backoff: float = option(1.0, "seconds before the first retry; doubles each retry")
    max_wait: float = option(120.0, "longest single wait; a longer Retry-After gives up on the page")
    max_bytes: int = option(20 * 1024 * 1024, "largest response accepted, in bytes")
    respect_robots: bool = option(True, "obey robots.txt")
    cache_dir: str = option("", "HTTP response cache (default: <data-dir>/.cache/http)")

    def validate(self) -> None:
        """Reject values no crawl can use, naming the field."""
        if not self.sources:
            raise ConfigError("field 'sources': name at least one source",
                              hint=f"known sources: {', '.join(source_names())}")
        for name in self.sources:
            get_source(name)
        checks = [("limit_per_source", self.limit_per_source >= 0), ("rate_limit", self.rate_limit >= 0),
                  ("timeout", self.timeout > 0), ("retries", self.retries >= 0), ("backoff", self.backoff >= 0),
                  ("max_wait", self.max_wait >= 0), ("max_bytes", self.max_bytes > 0)]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"field '{name}': {getattr(self, name)!r} is out of range")
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", self.lang):
            raise ConfigError(f"field 'lang': {self.lang!r} is not a Wikipedia language code", hint="e.g. en, de, simple")
        if self.base_url and not re.match(r"https?://[^/\s]+", self.base_url):
            raise ConfigError(f"field 'base_url': {self.base_url!r} is not an http(s) address",
                              hint="e.g. http://127.0.0.1:8000")

    def http_settings(self) -> HttpSettings:
        return HttpSettings(user_agent=self.user_agent, rate_limit=self.rate_limit, timeout=self.timeout,
                            retries=self.retries, backoff=self.backoff, max_wait=self.max_wait,
                            max_bytes=self.max_bytes, respect_robots=self.respect_robots)


@dataclass
class Fetched:
    """One page's bytes (or why there are none) and its provenance."""

    source: Source
    ref: PageRef
    status: int | str = ""
    content: bytes | None = None
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

    def provenance(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": self.ref.source, "page": self.ref.page, "url": self.ref.location,
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


def fingerprint_config(config: CrawlConfig) -> dict[str, Any]:
    """The part of the config that decides the artifact's content (paths replaced by content)."""
    data = {k: v for k, v in as_dict(config).items() if k not in OPERATIONAL}
    if {"url", "html"} & set(config.sources):
        from pipe_embed.crawlers.url import resolve_spec

        spec = resolve_spec(config)
        data["selector_spec"] = spec.as_dict()
    return data


def operational_settings(config: CrawlConfig) -> dict[str, Any]:
    """The settings left out of the fingerprint, for the manifest."""
    return {k: v for k, v in as_dict(config).items() if k in OPERATIONAL}


def _row_url(base: str, anchor: str) -> str:
    if not base:
        return ""
    return f"{base.split('#')[0]}#{anchor}" if anchor else base


def _summary_of_failures(failed: list[Fetched], limit: int = 10) -> str:
    lines = [f"{f.ref.page}: {f.error}" for f in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"… and {len(failed) - limit} more")
    return "; ".join(lines)


class _Writer:
    """Parses fetched pages and streams their rows into the artifact's files."""

    def __init__(self, config: CrawlConfig, fetched: list[Fetched]) -> None:
        self.config = config
        self.fetched = fetched

    def __call__(self, work: Path) -> StageResult:
        config = self.config
        limit = config.limit_per_source
        seen: dict[str, set[tuple[str, str]]] = {}
        kept_per_source: Counter[str] = Counter()
        terms_per_source: dict[str, set[str]] = {}
        dropped_total: Counter[str] = Counter()
        records: list[dict[str, Any]] = []
        empty_pages: list[str] = []
        ok_pages = [f for f in self.fetched if f.ok]
        with open(work / GLOSSARY_FILE, "w", newline="", encoding="utf-8") as fh, \
                progress_bar("crawl: parsing pages", len(ok_pages)) as advance:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for item in self.fetched:
                record = item.provenance()
                records.append(record)
                if not item.ok:
                    continue
                source_name = item.ref.source
                parsed = item.source.parse(item.ref, item.content or b"", config)
                item.content = None  # free the bytes as we go
                for message in parsed.warnings:
                    warn(f"{item.ref.page}: {message}")
                dropped = Counter(parsed.dropped)
                base = parsed.canonical_url or item.ref.url
                license_ = parsed.license or item.source.license
                keys = seen.setdefault(source_name, set())
                terms = terms_per_source.setdefault(source_name, set())
                page_terms: set[str] = set()
                kept = 0
                for index, entry in enumerate(parsed.entries):
                    if limit and kept_per_source[source_name] >= limit:
                        dropped["over limit_per_source"] += len(parsed.entries) - index
                        break
                    key = (entry.term, entry.definition)
                    if key in keys:
                        dropped["duplicate"] += 1
                        continue
                    keys.add(key)
                    writer.writerow((entry.term, entry.definition, ALIAS_SEPARATOR.join(entry.aliases),
                                     entry.section, source_name, item.ref.page, _row_url(base, entry.anchor),
                                     parsed.revision, license_, entry.anchor, entry.pos))
                    kept += 1
                    kept_per_source[source_name] += 1
                    terms.add(entry.term)
                    page_terms.add(entry.term)
                if not parsed.entries:
                    empty_pages.append(item.ref.page)
                record.update({"revision": parsed.revision, "title": parsed.title, "license": license_,
                               "entries": kept, "terms": len(page_terms), "dropped": dict(dropped),
                               "warnings": parsed.warnings})
                dropped_total.update(dropped)
                debug(f"{item.ref.page}: {kept} rows, {len(page_terms)} terms, dropped {dict(dropped)}")
                advance()
        rows = sum(kept_per_source.values())
        failed = [f for f in self.fetched if not f.ok]
        if rows == 0:
            raise PipeError(f"no glossary entries in any of the {len(self.fetched)} pages; nothing written",
                            hint="check the pages (pages without <dl> glossary markup need --selectors)"
                            + (f"; failed: {_summary_of_failures(failed)}" if failed else ""))
        write_jsonl(work / PAGES_FILE, records)
        terms_total = sum(len(t) for t in terms_per_source.values())
        by_source = {name: {"rows": kept_per_source[name], "terms": len(terms_per_source.get(name, ())),
                            "pages": sum(1 for f in self.fetched if f.ref.source == name),
                            "pages_failed": sum(1 for f in failed if f.ref.source == name)}
                     for name in dict.fromkeys(f.ref.source for f in self.fetched)}
        stats = {"pages": len(self.fetched), "pages_ok": len(self.fetched) - len(failed),
                 "pages_failed": len(failed), "pages_empty": len(empty_pages), "rows": rows, "terms": terms_total,
                 "dropped": dict(dropped_total), "by_source": by_source,
                 "failures": {f.ref.page: f.error for f in failed}}
        headline = {"rows": rows, "terms": terms_total, "pages": stats["pages_ok"], "failed": len(failed)}
        return StageResult(stats=stats, headline=headline)


def plan_pages(config: CrawlConfig) -> list[tuple[Source, PageRef]]:
    """Every (source, page) the crawl will read, in order."""
    planned: list[tuple[Source, PageRef]] = []
    for name in dict.fromkeys(config.sources):
        source = get_source(name)
        refs = source.pages(config)
        if not refs:
            warn(f"source '{name}' has no pages to read")
        planned.extend((source, ref) for ref in refs)
    if not planned:
        raise PipeError("nothing to crawl: the sources listed no pages")
    return planned


def make_client(store: Store, config: CrawlConfig, planned: list[tuple[Source, PageRef]]) -> PoliteClient | None:
    """A polite client allowed exactly the hosts of the planned network pages (None when all local)."""
    hosts = {netloc(ref.location) for _, ref in planned if not ref.local}
    if not hosts:
        return None
    cache_dir = Path(config.cache_dir) if config.cache_dir else store.root / ".cache" / "http"
    return PoliteClient(config.http_settings(), allowed_hosts=hosts, cache_dir=cache_dir)


def fetch_all(client: PoliteClient | None, planned: list[tuple[Source, PageRef]]) -> list[Fetched]:
    """Fetch or read every planned page with a progress bar, warning about each failure."""
    fetched: list[Fetched] = []
    with progress_bar("crawl: fetching pages", len(planned)) as advance:
        for source, ref in planned:
            item = fetch_page(client, source, ref)
            if item.error:
                warn(f"{ref.page}: skipped — {item.error}")
            else:
                debug(f"{ref.page}: {item.status}, {item.size} bytes"
                      + (" (unchanged, from cache)" if item.from_cache else ""))
            fetched.append(item)
            advance()
    return fetched


def run_crawl(store: Store, config: CrawlConfig, *, force: bool = False,
              client: PoliteClient | None = None) -> RunOutcome:
    """Fetch, fingerprint by content, parse and write a crawl artifact (or find the identical one)."""
    planned = plan_pages(config)
    own_client = client is None
    if own_client:
        client = make_client(store, config, planned)
    try:
        fetched = fetch_all(client, planned)
    finally:
        if own_client and client is not None:
            client.close()
    failed = [f for f in fetched if not f.ok]
    if client is not None:
        s = client.stats
        info(f"fetched {len(fetched)} pages: {s.downloads} downloaded, {s.not_modified} unchanged (304), "
             f"{len(failed)} failed, {s.requests} requests")
    if len(failed) == len(fetched):
        raise PipeError(f"every page failed ({len(failed)}): {_summary_of_failures(failed)}",
                        hint="nothing was written; check the addresses, the network, or use --dry-run")
    extra = {
        "pages": [[f.ref.source, f.ref.page, f.ref.url, f.sha256 if f.ok else f"failed:{f.kind}"] for f in fetched],
        "parsers": {f.source.name: f.source.parser_version for f in fetched},
    }
    writer = _Writer(config, fetched)

    def build(work: Path) -> StageResult:
        result = writer(work)
        result.extra["crawl_settings"] = operational_settings(config)
        if client is not None:
            result.stats["http"] = client.stats.as_dict()
        return result

    outcome = store.run(stage=STAGE, format_version=FORMAT_VERSION, config=fingerprint_config(config),
                        inputs=[], build=build, extra=extra, force=force)
    if failed:
        warn(f"{len(failed)} of {len(fetched)} pages failed: {_summary_of_failures(failed)}")
    return outcome
