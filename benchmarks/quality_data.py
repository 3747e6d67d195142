"""Glossaries for the quality benchmark, read with the project's own crawler and compose cleaning.

chess and slang are saved Wikipedia pages (the `html` crawl source); WordNet subsets are drawn from
the `wordnet` crawl source (Debian's /usr/share/wordnet), FOLDOC subsets from the `dictd` source
(Debian's dict-foldoc). Rows are cleaned and grouped per term by compose's `group_rows`, so every
recipe sees the texts pipe would see. A spec `NAME-N@D` takes N random terms of a big glossary and
pads the retrieval corpus with definitions of D − (their own) other terms (`@all`: every other
definition), so most distractors are definitions of the same kind, unlabelled. Splits are k folds
by term: every term is a query exactly once over the k folds.
"""

from __future__ import annotations

import csv
import random
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pipe_embed.crawlers.stage import CrawlConfig, run_crawl
from pipe_embed.pipeline.compose.readers import read_rows
from pipe_embed.pipeline.compose.stage import ComposeConfig, group_rows
from pipe_embed.pipeline.core.pairs import doc_id
from pipe_embed.pipeline.core.store import Store

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "wikipedia"
PAGES = {"chess": "glossary_of_chess.html", "slang": "glossary_of_2020s_slang.html"}
SUBSET_SEED = 0  # which random terms make up a subset of a big glossary (fixed: the glossary, not the split)
SPLIT_SEED = 0  # the one shuffle the folds are cut from


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
    distractors: int = 0  # corpus texts that belong to no term of the glossary

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


def _subset(name: str, terms: list[Term], size: int, distractors: str, source: str) -> Glossary:
    """`size` random terms of a big glossary; the corpus padded to `distractors` texts (or 'all') with
    definitions of the other terms that no chosen term shares."""
    rng = random.Random(SUBSET_SEED)
    chosen = rng.sample(terms, min(size, len(terms)))
    glossary = Glossary(f"{name}-{size}" + (f"@{distractors}" if distractors else ""), chosen,
                        source=f"{source}; {len(chosen)} random terms (seed {SUBSET_SEED})")
    if distractors:
        own = set(glossary.corpus)
        others = sorted({doc_id(d): d for t in terms for d in t.definitions if doc_id(d) not in own}.items())
        want = len(others) if distractors == "all" else max(0, int(distractors) - len(own))
        for key, text in rng.sample(others, min(want, len(others))):
            glossary.corpus[key] = text
        glossary.distractors = len(glossary.corpus) - len(own)
        glossary.source += f"; corpus padded with {glossary.distractors} other definitions of the same source"
    return glossary


def load_wordnet(size: int, distractors: str, work: Path) -> Glossary:
    """`size` random WordNet lemmas (all their glosses), from the `wordnet` crawl source."""
    csv_path = _crawl_rows(Store(work / "crawl"), CrawlConfig(sources=["wordnet"]))
    return _subset("wordnet", _grouped(csv_path), size, distractors, "pipe crawl --sources wordnet (WordNet 3.0)")


def load_foldoc(size: int, distractors: str, work: Path) -> Glossary:
    """`size` random FOLDOC terms (Free On-line Dictionary of Computing, Debian's dict-foldoc)."""
    csv_path = _crawl_rows(Store(work / "crawl"), CrawlConfig(sources=["dictd"], dictd=["foldoc"]))
    return _subset("foldoc", _grouped(csv_path), size, distractors,
                   "pipe crawl --sources dictd --dictd foldoc (Debian package dict-foldoc, FOLDOC, GNU FDL)")


SPEC = re.compile(r"^(wordnet|foldoc)-(\d+)(?:@(\d+|all))?$")


def load_glossary(spec: str) -> Glossary:
    """'chess', 'slang', 'wordnet-N[@D]' or 'foldoc-N[@D]'."""
    with tempfile.TemporaryDirectory() as tmp:
        if spec in PAGES:
            return load_page(spec, Path(tmp))
        match = SPEC.match(spec)
        if match:
            loader = load_wordnet if match.group(1) == "wordnet" else load_foldoc
            return loader(int(match.group(2)), match.group(3) or "", Path(tmp))
    raise SystemExit(f"unknown glossary {spec!r}: use chess, slang, wordnet-N[@D] or foldoc-N[@D] "
                     "(e.g. wordnet-3000@20000)")


def split_terms(glossary: Glossary, fold: int, folds: int = 5) -> tuple[list[Term], list[Term]]:
    """Fold `fold` of `folds` over one fixed shuffle of the terms: (train, held-out); the held-out terms
    are the queries, and over all folds every term is held out exactly once."""
    order = list(glossary.terms)
    random.Random(SPLIT_SEED).shuffle(order)
    held_out = order[fold::folds]
    chosen = {id(t) for t in held_out}
    return [t for t in order if id(t) not in chosen], held_out


def write_glossary_csv(terms: list[Term], path: Path) -> Path:
    """The terms as a (term, definition) CSV: what a user hands to `pipe compose --input`."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["term", "definition"])
        for t in terms:
            for d in t.definitions:
                writer.writerow([t.term, d])
    return path
