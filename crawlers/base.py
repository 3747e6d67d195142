"""Shapes every source shares: a page to read, a glossary entry, a parsed page, the Source protocol.

The bottom of the crawler package: it imports nothing from it. Sources read their settings through
`SourceOptions`, which the crawl stage's `CrawlConfig` satisfies, so no source imports the stage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PageRef:
    """One page a source wants: where its bytes come from and how to cite it.

    `location` is an http(s) URL (fetched through the polite client) or a local file path
    (`local=True`: read from disk, no network). `url` is the public address rows cite.
    """

    source: str
    page: str
    location: str
    url: str
    local: bool = False


@dataclass
class Entry:
    """One (term, definition) pair with where it sits on its page."""

    term: str
    definition: str
    aliases: list[str] = field(default_factory=list)
    section: str = ""
    anchor: str = ""
    pos: str = ""


@dataclass
class ParsedPage:
    """What a parser got out of one page: entries, drops by reason, page facts, warnings."""

    entries: list[Entry] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    revision: str = ""
    title: str = ""
    canonical_url: str = ""
    license: str = ""
    warnings: list[str] = field(default_factory=list)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count an item left out, by reason."""
        self.dropped[reason] += n


class SourceOptions(Protocol):
    """The crawl settings sources read (crawlers.config.CrawlConfig has them, with their docs)."""

    pages: list[str]
    urls: list[str]
    inputs: list[str]
    lang: str
    base_url: str
    dry_run: bool
    wordnet_dir: str
    dictd: list[str]
    selectors: str
    spec: str
    license: str


class Source(Protocol):
    """A glossary source: lists the pages it wants and parses one page's bytes into entries."""

    name: str
    license: str
    parser_version: int
    needs_html: bool

    def pages(self, config: SourceOptions) -> list[PageRef]:
        """The pages to read for this config (no I/O beyond listing local files)."""
        ...

    def parse(self, ref: PageRef, content: bytes, config: SourceOptions) -> ParsedPage:
        """Entries of one page from its raw bytes."""
        ...
