"""The url and html sources: CSS selectors from flags or a YAML spec, pages from a server or disk."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipe_embed.crawlers.stage import GLOSSARY_FILE, run_crawl
from pipe_embed.crawlers.url import (
    SelectorSpec,
    parse_selector_flags,
    parse_with_selectors,
    resolve_spec,
)
from pipe_embed.pipeline.core.errors import ConfigError, InputError
from tests.crawlers.conftest import serve_robots

CARDS = b"""<html><head><link rel="canonical" href="https://example.org/terms"></head><body>
<h2>Basics</h2>
<div class="entry" id="e-alpha"><h3>alpha</h3><p class="def">First letter.<sup class="reference">[1]</sup></p></div>
<div class="entry" id="e-beta"><h3>beta</h3><p class="def">Second letter.</p><p class="def">A test release.</p></div>
<h2>More</h2>
<div class="entry"><h3></h3><p class="def">Orphan text.</p></div>
<div class="entry"><h3>gamma</h3></div>
</body></html>"""
FLAT = b"""<html><body><h2>Part</h2><p class="t">one</p><p class="d">The first.</p>
<p class="d">Also the start.</p><p class="t">two</p><p class="d">The second.</p></body></html>"""


def test_selector_flags():
    assert parse_selector_flags("item=div.entry; term=h3 ;definition=p.def") == {
        "item": "div.entry", "term": "h3", "definition": "p.def"}
    with pytest.raises(ConfigError, match="selectors"):
        parse_selector_flags("term h3")


def test_item_mode():
    page = parse_with_selectors(CARDS, SelectorSpec(item="div.entry", term="h3", definition="p.def", section="h2"))
    assert [(e.term, e.definition, e.section, e.anchor) for e in page.entries] == [
        ("alpha", "First letter.", "Basics", "e-alpha"),
        ("beta", "Second letter.", "Basics", "e-beta"),
        ("beta", "A test release.", "Basics", "e-beta"),
    ]
    assert page.dropped == {"empty term": 1, "term without definition": 1}
    assert page.canonical_url == "https://example.org/terms"


def test_document_order_mode():
    page = parse_with_selectors(FLAT, SelectorSpec(term="p.t", definition="p.d", section="h2"))
    assert [(e.term, e.definition, e.section) for e in page.entries] == [
        ("one", "The first.", "Part"), ("one", "Also the start.", "Part"), ("two", "The second.", "Part")]


def test_spec_file_and_flag_precedence(tmp_path: Path, make_config):
    spec = tmp_path / "spec.yaml"
    spec.write_text("item: div.entry\nterm: h3\ndefinition: p.def\nlicense: CC0\nurls: [http://x.test/a]\n")
    resolved = resolve_spec(make_config(spec=str(spec), selectors="definition=p"))
    assert (resolved.item, resolved.term, resolved.definition, resolved.license) == ("div.entry", "h3", "p", "CC0")
    assert resolved.urls == ("http://x.test/a",)


def test_bad_specs(tmp_path: Path, make_config):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("term: h3\ndefinitions: p\n")
    with pytest.raises(InputError, match="unknown key 'definitions'"):
        resolve_spec(make_config(spec=str(bad_key)))
    with pytest.raises(ConfigError, match="'definition' is missing"):
        resolve_spec(make_config(selectors="term=h3"))
    with pytest.raises(ConfigError, match="not a valid CSS selector"):
        resolve_spec(make_config(selectors="term=h3[; definition=p"))


def test_url_source_with_selectors(store, server, make_config):
    serve_robots(server)
    server.expect_request("/glossary").respond_with_data(CARDS, content_type="text/html")
    config = make_config(sources=["url"], urls=[server.url_for("/glossary")],
                         selectors="item=div.entry; term=h3; definition=p.def", license="CC BY 4.0")
    outcome = run_crawl(store, config)
    with open(outcome.artifact.file(GLOSSARY_FILE), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["term"], r["url"], r["license"], r["source"]) for r in rows][0] == (
        "alpha", "https://example.org/terms#e-alpha", "CC BY 4.0", "url")
    assert len(rows) == 3
    # other selectors make other content: a different version
    other = run_crawl(store, make_config(sources=["url"], urls=[server.url_for("/glossary")],
                                         selectors="term=h3; definition=p.def", license="CC BY 4.0"))
    assert other.artifact.version != outcome.artifact.version


def test_url_source_needs_urls(make_config, store):
    from pipe_embed.pipeline.core.errors import PipeError

    with pytest.raises(PipeError, match="no pages"):
        run_crawl(store, make_config(sources=["url"]))


def test_html_source_missing_input(store, make_config, tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        run_crawl(store, make_config(sources=["html"], inputs=[str(tmp_path / "nope.html")]))
