"""Page planning of the wikipedia_glossary source: titles, languages, mirrors, samples."""

from __future__ import annotations

import pytest

from pipe_embed.crawlers.registry import get_source, source_names
from pipe_embed.crawlers.wikipedia_glossary import (
    DEFAULT_PAGES,
    available_samples,
    sample_name,
    title_path,
)
from pipe_embed.pipeline.core.errors import PipeError


def test_curated_default_list():
    assert len(DEFAULT_PAGES) >= 20
    assert len(set(DEFAULT_PAGES)) == len(DEFAULT_PAGES)
    assert all(title.startswith("Glossary of ") for title in DEFAULT_PAGES)


def test_registry_knows_every_source():
    assert source_names() == ["dictd", "html", "url", "wikipedia_glossary", "wordnet"]
    assert get_source("wikipedia_glossary").name == "wikipedia_glossary"


def test_title_paths():
    assert title_path("Glossary of chess") == "Glossary_of_chess"
    assert title_path("Glossary of engineering: A–L") == "Glossary_of_engineering:_A%E2%80%93L"
    assert sample_name("Glossary of chess") == "glossary_of_chess.html.gz"
    assert "Glossary of chess" in available_samples()


def test_pages_default_lang_and_mirror(make_config):
    source = get_source("wikipedia_glossary")
    default = source.pages(make_config())
    assert len(default) == len(DEFAULT_PAGES)
    assert default[0].location == "https://en.wikipedia.org/wiki/Glossary_of_computer_science"
    (german,) = source.pages(make_config(lang="de", pages=["Glossar X"]))
    assert german.location == "https://de.wikipedia.org/wiki/Glossar_X"
    (mirrored,) = source.pages(make_config(pages=["Glossary of chess"], base_url="http://127.0.0.1:9/"))
    assert mirrored.location == "http://127.0.0.1:9/wiki/Glossary_of_chess"
    (sample,) = source.pages(make_config(dry_run=True))
    assert sample.local and sample.url == "https://en.wikipedia.org/wiki/Glossary_of_chess"


def test_other_language_needs_titles(make_config):
    with pytest.raises(PipeError, match="--lang de needs --pages"):
        get_source("wikipedia_glossary").pages(make_config(lang="de"))
