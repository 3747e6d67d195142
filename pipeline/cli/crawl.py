"""`pipe crawl`: glossary pages from Wikipedia glossaries, any URL or saved HTML, WordNet, or dictd dictionaries."""

from __future__ import annotations

from typing import Any

from pipe_embed.crawlers.stage import CrawlConfig, run_crawl
from pipe_embed.pipeline.cli.app import Shared, open_store, report, stage_command
from pipe_embed.pipeline.cli.options import config_parameters, overrides
from pipe_embed.pipeline.core.config import load_config
from pipe_embed.pipeline.core.console import info


def crawl(shared: Shared, values: dict[str, Any]) -> None:
    """Crawl the chosen sources into data/crawl/<version>/ (glossary.csv, pages.jsonl)."""
    config = load_config(CrawlConfig, "crawl", shared.config, overrides(CrawlConfig, values))
    outcome = run_crawl(open_store(shared), config, force=shared.force)
    headline = outcome.artifact.manifest.get("headline", {})
    if not outcome.cached:
        pages = headline.get("pages", 0)
        info(f"{headline.get('rows', 0)} rows, {headline.get('terms', 0)} terms from "
             f"{pages} page{'' if pages == 1 else 's'} ({headline.get('failed', 0)} failed)")
    report(outcome)


stage_command("crawl",
              "Fetch glossary pages (Wikipedia glossaries, URLs, saved HTML, WordNet, dictd) into a crawl artifact.",
              config_parameters(CrawlConfig), crawl, configs={"crawl": CrawlConfig})
