"""Glossaries for the quality benchmark, read with the project's own crawler and compose cleaning.

chess and slang are saved Wikipedia pages (the `html` crawl source); WordNet subsets are drawn from
the `wordnet` crawl source (Debian's /usr/share/wordnet). Rows are cleaned and grouped per term by
compose's `group_rows`, so every recipe sees the texts pipe would see. Splits are random 80/20 by term.
"""

from __future__ import annotations

import csv
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipe_embed.crawlers.stage import CrawlConfig, run_crawl
from pipe_embed.pipeline.compose.readers import read_rows
from pipe_embed.pipeline.compose.stage import ComposeConfig, group_rows
from pipe_embed.pipeline.core.pairs import doc_id, normalize_key
from pipe_embed.pipeline.core.store import Store

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "wikipedia"
PAGES = {"chess": "glossary_of_chess.html", "slang": "glossary_of_2020s_slang.html"}
WORDNET_SEED = 0  # which random WordNet lemmas make up a subset (fixed: the glossary, not the split)


@dataclass
class Term:
    """One glossary term with all its definitions."""

    term: str
    definitions: list[str]


@dataclass
class Glossary:
    """A named glossary: its terms and the corpus of every definition (id -> text)."""

    name: str
    terms: list[Term]
    corpus: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        for t in self.terms:
            for d in t.definitions:
                self.corpus.setdefault(doc_id(d), d)


def _crawl_rows(store: Store, config: CrawlConfig) -> Path:
    return run_crawl(store, config).artifact.file("glossary.csv")


def _grouped(csv_path: Path) -> list[Term]:
    """Compose's cleaning and per-term grouping (defaults) of a glossary.csv."""
    records, _dropped = group_rows(list(read_rows(csv_path, None, None)), ComposeConfig())
    return [Term(r["anchor"], list(r["positives"])) for r in records]


def load_page(name: str, work: Path) -> Glossary:
    """A saved Wikipedia glossary page, parsed by the `html` crawl source."""
    page = FIXTURES / PAGES[name]
    csv_path = _crawl_rows(Store(work / "crawl"), CrawlConfig(sources=["html"], inputs=[str(page)]))
    return Glossary(name, _grouped(csv_path), source=f"pipe crawl --sources html --input {page.relative_to(ROOT)}")


def load_wordnet(size: int, work: Path) -> Glossary:
    """`size` random WordNet lemmas (all their glosses), from the `wordnet` crawl source."""
    csv_path = _crawl_rows(Store(work / "crawl"), CrawlConfig(sources=["wordnet"]))
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    keys = sorted({normalize_key(r["term"]) for r in rows})
    chosen = set(random.Random(WORDNET_SEED).sample(keys, size))
    subset = work / f"wordnet-{size}.csv"
    with open(subset, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["term", "definition"])
        for r in rows:
            if normalize_key(r["term"]) in chosen:
                writer.writerow([r["term"], r["definition"]])
    return Glossary(f"wordnet-{size}", _grouped(subset),
                    source=f"pipe crawl --sources wordnet; {size} random lemmas (seed {WORDNET_SEED})")


def load_glossary(spec: str) -> Glossary:
    """'chess', 'slang' or 'wordnet-N'."""
    with tempfile.TemporaryDirectory() as tmp:
        if spec in PAGES:
            return load_page(spec, Path(tmp))
        if spec.startswith("wordnet-") and spec[8:].isdigit():
            return load_wordnet(int(spec[8:]), Path(tmp))
    raise SystemExit(f"unknown glossary {spec!r}: use chess, slang or wordnet-N (e.g. wordnet-300)")


def split_terms(glossary: Glossary, seed: int, held_out: float = 0.2) -> tuple[list[Term], list[Term]]:
    """A random (train, held-out) split of the terms; the held-out terms are the queries."""
    order = list(glossary.terms)
    random.Random(seed).shuffle(order)
    cut = max(1, round(len(order) * held_out))
    return order[cut:], order[:cut]


def write_glossary_csv(terms: list[Term], path: Path) -> Path:
    """The terms as a (term, definition) CSV: what a user hands to `pipe compose --input`."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["term", "definition"])
        for t in terms:
            for d in t.definitions:
                writer.writerow([t.term, d])
    return path
