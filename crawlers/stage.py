"""The crawl stage: fetch every source's pages, parse them, write one `crawl` artifact.

Files of the artifact:
- `glossary.csv`: term, definition, aliases (" | "-separated), section, source, page, url (with the
  term's #anchor), revision, license, anchor, pos — one row per definition (a term with several
  numbered definitions has several rows).
- `pages.jsonl`: one line per page: provenance (url, status, bytes, sha256, from_cache, revision)
  and stats (entries kept, terms, dropped by reason, warnings, or the error that skipped it).

Pages are fetched first (crawlers.fetch, through the polite client and its cache; with
`limit_per_source` a source's pages stop once its rows are in), then the artifact's version is
fingerprinted from the output-relevant config plus each page's content hash (or failure kind): a
re-crawl whose pages all answer 304 or hash the same is a cache hit; any changed page is a new
version. Network settings (rate limit, timeouts, retries, cache dir) and local paths do not enter
the fingerprint; they are recorded in the manifest under `crawl_settings`.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

from pipe_embed.crawlers.base import PageRef, Source
from pipe_embed.crawlers.config import OPERATIONAL, CrawlConfig
from pipe_embed.crawlers.fetch import (
    FetchReport,
    fetch_all,
    list_failures,
    no_page_error,
    summary_line,
)
from pipe_embed.crawlers.http import PoliteClient, netloc, strip_userinfo
from pipe_embed.crawlers.registry import get_source
from pipe_embed.crawlers.url import resolve_spec
from pipe_embed.pipeline.core.config import as_dict
from pipe_embed.pipeline.core.console import debug, info, progress_bar, warn
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.pairs import write_jsonl
from pipe_embed.pipeline.core.store import RunOutcome, StageResult, Store, check_directory

__all__ = ["COLUMNS", "GLOSSARY_FILE", "PAGES_FILE", "CrawlConfig", "make_client", "plan_pages", "run_crawl"]

STAGE = "crawl"
FORMAT_VERSION = 1
GLOSSARY_FILE = "glossary.csv"
PAGES_FILE = "pages.jsonl"
COLUMNS = ("term", "definition", "aliases", "section", "source", "page", "url", "revision", "license",
           "anchor", "pos")
ALIAS_SEPARATOR = " | "


def fingerprint_config(config: CrawlConfig) -> dict[str, Any]:
    """The part of the config that decides the artifact's content (paths replaced by content), with
    the credentials of every address removed: it goes into the manifest."""
    data = {k: v for k, v in as_dict(config).items() if k not in OPERATIONAL}
    data["base_url"] = strip_userinfo(config.base_url)
    data["urls"] = [strip_userinfo(u) for u in config.urls]
    if {"url", "html"} & set(config.sources):
        spec = resolve_spec(config).as_dict()
        if isinstance(spec.get("urls"), list):
            spec["urls"] = [strip_userinfo(u) for u in spec["urls"]]
        data["selector_spec"] = spec
    return data


def operational_settings(config: CrawlConfig) -> dict[str, Any]:
    """The settings left out of the fingerprint, for the manifest."""
    return {k: v for k, v in as_dict(config).items() if k in OPERATIONAL}


def _row_url(base: str, anchor: str) -> str:
    """The address a row cites: its page's (no credentials) with the term's #anchor."""
    base = strip_userinfo(base)
    if not base:
        return ""
    return f"{base.split('#')[0]}#{anchor}" if anchor else base


class _Writer:
    """Parses fetched pages and streams their rows into the artifact's files."""

    def __init__(self, config: CrawlConfig, report: FetchReport) -> None:
        self.config = config
        self.fetched = report.pages
        self.not_fetched = report.not_fetched

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
                parsed = item.parsed if item.parsed is not None else \
                    item.source.parse(item.ref, item.content or b"", config)
                item.content = item.parsed = None  # free the page as we go
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
                            + (f"; failed: {list_failures(failed)}" if failed else ""))
        write_jsonl(work / PAGES_FILE, records)
        terms_total = sum(len(t) for t in terms_per_source.values())
        by_source = {name: {"rows": kept_per_source[name], "terms": len(terms_per_source.get(name, ())),
                            "pages": sum(1 for f in self.fetched if f.ref.source == name),
                            "pages_failed": sum(1 for f in failed if f.ref.source == name)}
                     for name in dict.fromkeys(f.ref.source for f in self.fetched)}
        stats = {"pages": len(self.fetched), "pages_ok": len(self.fetched) - len(failed),
                 "pages_failed": len(failed), "pages_empty": len(empty_pages),
                 "pages_not_fetched": sum(self.not_fetched.values()), "rows": rows, "terms": terms_total,
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
    check_directory(cache_dir, "the HTTP cache dir" if config.cache_dir else "the store's .cache dir",
                    "pass --cache-dir DIR (a directory; it is created when missing)" if config.cache_dir
                    else "move the file away, or pass --cache-dir DIR")
    return PoliteClient(config.http_settings(), allowed_hosts=hosts, cache_dir=cache_dir)


def run_crawl(store: Store, config: CrawlConfig, *, force: bool = False,
              client: PoliteClient | None = None) -> RunOutcome:
    """Fetch, fingerprint by content, parse and write a crawl artifact (or find the identical one)."""
    planned = plan_pages(config)
    own_client = client is None
    if own_client:
        client = make_client(store, config, planned)
    try:
        report = fetch_all(client, planned, config)
    finally:
        if own_client and client is not None:
            client.close()
    fetched, failed = report.pages, report.failed
    if len(failed) < len(fetched):
        for host, count in report.repeated.items():
            warn(f"{host}: {count} more page{'s' if count != 1 else ''} skipped for the same reason")
    if client is not None or report.not_fetched:  # local files alone have nothing to say about the network
        info(summary_line(report, client))
    if len(failed) == len(fetched):
        raise no_page_error(failed)
    extra = {
        "pages": [[f.ref.source, f.ref.page, strip_userinfo(f.ref.url), f.sha256 if f.ok else f"failed:{f.kind}"]
                  for f in fetched],
        "parsers": {f.source.name: f.source.parser_version for f in fetched},
    }
    writer = _Writer(config, report)

    def build(work: Path) -> StageResult:
        result = writer(work)
        result.extra["crawl_settings"] = operational_settings(config)
        if client is not None:
            result.stats["http"] = client.stats.as_dict()
        return result

    outcome = store.run(stage=STAGE, format_version=FORMAT_VERSION, config=fingerprint_config(config),
                        inputs=[], build=build, extra=extra, force=force)
    if failed:
        warn(f"{len(failed)} of {len(fetched)} pages failed: {list_failures(failed)}")
    return outcome
