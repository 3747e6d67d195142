"""`CrawlConfig`: the settings of `pipe crawl`, what each source reads and how pages are fetched.

Fields marked `versioned=False` change how pages are fetched (rate, timeouts, cache) or where local
files are, not what the artifact holds: they stay out of its version and go into the manifest.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

from pipe_embed.crawlers.http import DEADLINE_FACTOR, DEFAULT_USER_AGENT, HttpSettings, strip_userinfo
from pipe_embed.crawlers.registry import get_source, source_names
from pipe_embed.pipeline.core.config import is_versioned, option
from pipe_embed.pipeline.core.errors import ConfigError

# The float settings: (lowest, highest, unit). The lowest of timeout is exclusive (0 would never wait).
FLOAT_RANGES: dict[str, tuple[float, float, str]] = {
    "rate_limit": (0.0, 1000.0, "requests per second"),
    "timeout": (0.0, 3600.0, "seconds"),
    "deadline": (0.0, 86400.0, "seconds"),
    "backoff": (0.0, 3600.0, "seconds"),
    "max_wait": (0.0, 3600.0, "seconds"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_range(name: str, value: float, low: float, high: float, unit: str) -> None:
    """Refuse a float setting that is not finite or lies outside [low, high] (timeout: above 0)."""
    ok = isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high
    if name == "timeout" and ok:
        ok = value > 0
    if not ok:
        span = f"more than {low:g} and at most {high:g}" if name == "timeout" else f"{low:g} to {high:g}"
        raise ConfigError(f"field '{name}': {value!r} is out of range ({span} {unit})",
                          hint=f"give a finite number of {unit} in that range")


def check_user_agent(value: str) -> None:
    """Refuse a User-Agent HTTP cannot send: empty, or holding a line break or another control character."""
    if not value.strip():
        raise ConfigError("field 'user_agent': is empty", hint="give a descriptive User-Agent, or leave the default")
    bad = _CONTROL.search(value)
    if bad:
        raise ConfigError(f"field 'user_agent': holds a control character ({bad.group(0)!r} at position "
                          f"{bad.start() + 1}); an HTTP header is one line of text",
                          hint="remove line breaks (CR/LF) and tabs from --user-agent")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"field 'user_agent': {value[exc.start]!r} at position {exc.start + 1} cannot be "
                          "sent in an HTTP header", hint="use ASCII (or Latin-1) characters in --user-agent") from None


@dataclass
class CrawlConfig:
    """Configuration of `pipe crawl`."""

    sources: list[str] = option(["wikipedia_glossary"], "sources to crawl: wikipedia_glossary, url, html, wordnet, dictd")
    pages: list[str] = option([], "wikipedia_glossary: page titles (default: the curated list of glossaries)")
    urls: list[str] = option([], "url: page addresses")
    inputs: list[str] = option([], "html: saved HTML files or directories", flag="--input", versioned=False)
    limit_per_source: int = option(0, "keep at most this many rows per source, fetching no more pages "
                                      "once they are in (0 = all)")
    lang: str = option("en", "wikipedia_glossary: language edition (en, de, fr, …)")
    base_url: str = option("", "wikipedia_glossary: a mirror serving the same /wiki/<Title> paths")
    dry_run: bool = option(False, "offline: wikipedia_glossary reads the bundled sample pages")
    wordnet_dir: str = option("", "wordnet: database directory (default $WORDNET_DIR or /usr/share/wordnet)",
                              versioned=False)
    dictd: list[str] = option([], "dictd: dictionaries, by name (looked up in $DICTD_DIR, /usr/share/dictd, "
                                  "/usr/local/share/dictd) or path to NAME.index or NAME.dict(.dz) "
                                  "(default: every installed one)", versioned=False)
    selectors: str = option("", "url/html: CSS selectors 'term=…; definition=…[; item=…][; section=…]'",
                            versioned=False)
    spec: str = option("", "url/html: YAML selector spec (term, definition, item, section, urls, license)",
                       versioned=False)
    license: str = option("", "url/html: licence of the pages' text")
    user_agent: str = option(DEFAULT_USER_AGENT, "User-Agent sent with every request", versioned=False)
    rate_limit: float = option(1.0, "requests per second per host (0 = unpaced)", versioned=False)
    timeout: float = option(30.0, "seconds to wait for a server (connecting, or any next bytes) before retrying",
                            versioned=False)
    deadline: float = option(0.0, f"seconds one request may take, headers and body, before it is retried "
                                  f"(0 = {DEADLINE_FACTOR} × timeout)", versioned=False)
    retries: int = option(4, "retries on 429, 5xx, timeouts, connection errors and cut bodies", versioned=False)
    backoff: float = option(1.0, "seconds before the first retry; doubles each retry", versioned=False)
    max_wait: float = option(120.0, "longest single wait; a longer Retry-After gives up on the page",
                             versioned=False)
    max_bytes: int = option(20 * 1024 * 1024, "largest response accepted, in bytes", versioned=False)
    respect_robots: bool = option(True, "obey robots.txt", versioned=False)
    cache_dir: str = option("", "HTTP response cache (default: <data-dir>/.cache/http)", versioned=False)

    def validate(self) -> None:
        """Reject values no crawl can use, naming the field."""
        if not self.sources:
            raise ConfigError("field 'sources': name at least one source",
                              hint=f"known sources: {', '.join(source_names())}")
        for name in self.sources:
            get_source(name)
        checks = [("limit_per_source", self.limit_per_source >= 0), ("retries", self.retries >= 0),
                  ("max_bytes", self.max_bytes > 0)]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"field '{name}': {getattr(self, name)!r} is out of range")
        for name, (low, high, unit) in FLOAT_RANGES.items():
            check_range(name, getattr(self, name), low, high, unit)
        check_user_agent(self.user_agent)
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", self.lang):
            raise ConfigError(f"field 'lang': {self.lang!r} is not a Wikipedia language code", hint="e.g. en, de, simple")
        if self.base_url and not re.match(r"https?://[^/\s]+", self.base_url):
            raise ConfigError(f"field 'base_url': {strip_userinfo(self.base_url)!r} is not an http(s) address",
                              hint="e.g. http://127.0.0.1:8000")

    def http_settings(self) -> HttpSettings:
        return HttpSettings(user_agent=self.user_agent, rate_limit=self.rate_limit, timeout=self.timeout,
                            deadline=self.deadline, retries=self.retries, backoff=self.backoff,
                            max_wait=self.max_wait, max_bytes=self.max_bytes, respect_robots=self.respect_robots)


# Settings that change how pages are fetched, not what the artifact holds.
OPERATIONAL = tuple(f.name for f in fields(CrawlConfig) if not is_versioned(f))
