"""Source `wikipedia_glossary`: Wikipedia "Glossary of …" pages, fetched from /wiki/<Title>.

`--pages` picks titles (default: the curated list below), `--lang` another Wikipedia, `--base-url`
a mirror or proxy serving the same `/wiki/<Title>` paths. With `--dry-run` the pages come from the
bundled samples in data/sample/wikipedia/ instead (no network).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from urllib.parse import quote

from pipe_embed.crawlers.base import PageRef, ParsedPage, SourceOptions
from pipe_embed.crawlers.http import strip_userinfo
from pipe_embed.crawlers.mediawiki import PARSER_VERSION, parse_glossary
from pipe_embed.pipeline.core.errors import PipeError

NAME = "wikipedia_glossary"
DEFAULT_LICENSE = "CC BY-SA 4.0"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample" / "wikipedia"

# A spread of fields; every title is an English Wikipedia glossary written with definition lists.
DEFAULT_PAGES: tuple[str, ...] = (
    "Glossary of computer science",
    "Glossary of artificial intelligence",
    "Glossary of machine vision",
    "Glossary of probability and statistics",
    "Glossary of calculus",
    "Glossary of linear algebra",
    "Glossary of graph theory",
    "Glossary of areas of mathematics",
    "Glossary of physics",
    "Glossary of astronomy",
    "Glossary of chemistry terms",
    "Glossary of biology",
    "Glossary of ecology",
    "Glossary of botanical terms",
    "Glossary of medicine",
    "Glossary of psychiatry",
    "Glossary of economics",
    "Glossary of patent law terms",
    "Glossary of civil engineering",
    "Glossary of mechanical engineering",
    "Glossary of electrical and electronics engineering",
    "Glossary of aerospace engineering",
    "Glossary of architecture",
    "Glossary of geology",
    "Glossary of meteorology",
    "Glossary of chess",
)


def title_path(title: str) -> str:
    """The /wiki/ path segment of a title: spaces as underscores, the rest percent-encoded."""
    return quote(title.strip().replace(" ", "_"), safe="()_,'!:-.~*")


def sample_name(title: str) -> str:
    """File name of a bundled sample page: glossary_of_chess.html.gz for 'Glossary of chess'."""
    return re.sub(r"[^a-z0-9]+", "_", title.strip().casefold()).strip("_") + ".html.gz"


def available_samples() -> list[str]:
    """Titles of the bundled sample pages."""
    if not SAMPLE_DIR.is_dir():
        return []
    return sorted(p.name.removesuffix(".html.gz").replace("_", " ").capitalize()
                  for p in SAMPLE_DIR.glob("*.html.gz"))


def read_sample(path: Path) -> bytes:
    """Bytes of a bundled sample page (gzip or plain)."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


class WikipediaGlossary:
    """Wikipedia glossary pages parsed with the MediaWiki glossary parser."""

    name = NAME
    license = DEFAULT_LICENSE
    parser_version = PARSER_VERSION
    needs_html = True

    def base_url(self, config: SourceOptions) -> str:
        return (config.base_url or f"https://{config.lang}.wikipedia.org").rstrip("/")

    def pages(self, config: SourceOptions) -> list[PageRef]:
        if not config.pages and not config.dry_run and config.lang != "en":
            raise PipeError(f"the default page list holds English titles; --lang {config.lang} needs --pages",
                            hint="pass that edition's glossary page titles with --pages")
        titles = list(config.pages) or (available_samples() if config.dry_run else list(DEFAULT_PAGES))
        public = f"https://{config.lang}.wikipedia.org"
        refs = []
        for title in dict.fromkeys(t.strip() for t in titles if t.strip()):
            url = f"{public}/wiki/{title_path(title)}"
            if config.dry_run:
                sample = SAMPLE_DIR / sample_name(title)
                if not sample.is_file():
                    have = ", ".join(available_samples()) or "none"
                    raise PipeError(f"--dry-run: no bundled sample for '{title}' (bundled: {have})",
                                    hint="drop --pages to use the samples, or crawl without --dry-run")
                refs.append(PageRef(NAME, title, str(sample), url, local=True))
            else:
                location = f"{self.base_url(config)}/wiki/{title_path(title)}"
                refs.append(PageRef(NAME, title, location, url if not config.base_url else strip_userinfo(location)))
        return refs

    def parse(self, ref: PageRef, content: bytes, config: SourceOptions) -> ParsedPage:
        parsed = parse_glossary(content)
        parsed.license = parsed.license or DEFAULT_LICENSE
        return parsed
