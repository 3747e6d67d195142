"""Sources by name: `pipe crawl --sources wikipedia_glossary,wordnet` looks them up here."""

from __future__ import annotations

import importlib

from pipe_embed.crawlers.base import Source
from pipe_embed.pipeline.core.errors import ConfigError

# name -> "module:Class"; imported on first use so a source's dependencies load only when needed.
_BUILTIN: dict[str, str] = {
    "wikipedia_glossary": "pipe_embed.crawlers.wikipedia_glossary:WikipediaGlossary",
    "url": "pipe_embed.crawlers.url:UrlSource",
    "html": "pipe_embed.crawlers.url:HtmlSource",
    "wordnet": "pipe_embed.crawlers.wordnet:WordNet",
    "dictd": "pipe_embed.crawlers.dictd:Dictd",
}
_REGISTERED: dict[str, Source] = {}


def register(source: Source) -> None:
    """Add (or replace) a source under its `name`."""
    _REGISTERED[source.name] = source


def source_names() -> list[str]:
    """Every known source name."""
    return sorted({*_BUILTIN, *_REGISTERED})


def get_source(name: str) -> Source:
    """The source registered under `name`; an unknown name is a config error listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise ConfigError(f"field 'sources': unknown source '{name}'",
                          hint=f"known sources: {', '.join(source_names())}")
    module_name, _, class_name = _BUILTIN[name].partition(":")
    source = getattr(importlib.import_module(module_name), class_name)()
    _REGISTERED[name] = source
    return source
