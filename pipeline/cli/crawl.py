"""`pipe crawl`: glossary pages from Wikipedia glossaries, any URL or saved HTML, or WordNet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pipe_embed.pipeline.cli.app import (
    ConfigFile,
    DataDir,
    Force,
    Quiet,
    Verbose,
    command,
    report,
    setup,
)
from pipe_embed.pipeline.core.config import load_config


def _split(value: str | None) -> list[str] | None:
    """A comma-separated flag as a list (None stays None so the config file/default applies)."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


@command("crawl", "Fetch glossary pages (Wikipedia glossaries, URLs, saved HTML, WordNet) into a crawl artifact.")
def crawl(
    sources: Annotated[str | None, typer.Option(
        "--sources", help="Sources, comma-separated: wikipedia_glossary (default), url, html, wordnet.")] = None,
    pages: Annotated[str | None, typer.Option(
        "--pages", help='wikipedia_glossary: page titles, e.g. "Glossary of chess,Glossary of physics".')] = None,
    urls: Annotated[str | None, typer.Option("--urls", help="url: page addresses, comma-separated.")] = None,
    input_paths: Annotated[str | None, typer.Option(
        "--input", help="html: saved HTML files or directories, comma-separated.")] = None,
    limit_per_source: Annotated[int | None, typer.Option(
        "--limit-per-source", help="Keep at most N rows per source.")] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="wikipedia_glossary: language edition.")] = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", help="wikipedia_glossary: mirror serving /wiki/<Title> (e.g. http://127.0.0.1:8000).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Offline: read the bundled sample pages instead of the network.")] = False,
    wordnet_dir: Annotated[Path | None, typer.Option(
        "--wordnet-dir", help="wordnet: database directory (default /usr/share/wordnet).")] = None,
    selectors: Annotated[str | None, typer.Option(
        "--selectors", help='url/html: "term=CSS; definition=CSS[; item=CSS][; section=CSS]".')] = None,
    spec: Annotated[Path | None, typer.Option("--spec", help="url/html: YAML selector spec.")] = None,
    license_: Annotated[str | None, typer.Option("--license", help="url/html: licence of the pages' text.")] = None,
    rate_limit: Annotated[float | None, typer.Option(
        "--rate-limit", help="Requests per second per host (default 1).")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per request (default 30).")] = None,
    retries: Annotated[int | None, typer.Option("--retries", help="Retries per request (default 4).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        "--cache-dir", help="HTTP cache (default <data-dir>/.cache/http).")] = None,
    data_dir: DataDir = Path("data"),
    config: ConfigFile = None,
    force: Force = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Crawl the chosen sources and write data/crawl/<version>/ (glossary.csv, pages.jsonl)."""
    from pipe_embed.crawlers.stage import CrawlConfig, run_crawl

    store = setup(data_dir, verbose, quiet)
    overrides = {
        "sources": _split(sources), "pages": _split(pages), "urls": _split(urls), "inputs": _split(input_paths),
        "limit_per_source": limit_per_source, "lang": lang, "base_url": base_url, "dry_run": dry_run or None,
        "wordnet_dir": str(wordnet_dir) if wordnet_dir else None, "selectors": selectors,
        "spec": str(spec) if spec else None, "license": license_, "rate_limit": rate_limit, "timeout": timeout,
        "retries": retries, "cache_dir": str(cache_dir) if cache_dir else None,
    }
    cfg = load_config(CrawlConfig, "crawl", config, overrides)
    outcome = run_crawl(store, cfg, force=force)
    art = outcome.artifact
    headline = art.manifest.get("headline", {})
    if not outcome.cached:
        from pipe_embed.pipeline.core.console import info

        info(f"{headline.get('rows', 0)} rows, {headline.get('terms', 0)} terms from "
             f"{headline.get('pages', 0)} pages ({headline.get('failed', 0)} failed)")
    report(outcome)
