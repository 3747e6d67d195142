"""WordNet (lemma, gloss) pairs for the mining benchmarks, read straight from /usr/share/wordnet.

`data.noun|verb|adj|adv`: each synset line holds its lemmas (word, lex_id pairs after the hex word
count) and, after ' | ', the gloss; the definition is the gloss before its first quoted example.
The benchmarks write these rows into a compose-like artifact so they run the real mine stage.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.pairs import (
    CORPUS_FILE,
    anchor_id,
    doc_id,
    normalize_key,
    pairs_file,
    write_jsonl,
)
from pipe_embed.pipeline.core.store import Artifact, StageResult, Store

WORDNET = Path("/usr/share/wordnet")


def synsets(root: Path = WORDNET) -> Iterator[tuple[list[str], str]]:
    """(lemmas, definition) of every synset."""
    for pos in ("noun", "verb", "adj", "adv"):
        with open(root / f"data.{pos}", encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  "):
                    continue
                head, _, gloss = line.partition(" | ")
                parts = head.split()
                count = int(parts[3], 16)
                lemmas = [re.sub(r"\(\w+\)$", "", parts[4 + 2 * i]).replace("_", " ") for i in range(count)]
                definition = re.split(r';\s*"', gloss.strip(), maxsplit=1)[0].strip().rstrip(";").strip()
                if definition:
                    yield lemmas, definition


def lemma_rows(limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """One canonical row per normalised lemma, positives = the glosses of all its synsets."""
    grouped: dict[str, dict[str, Any]] = {}
    for lemmas, definition in synsets():
        for lemma in lemmas:
            key = normalize_key(lemma)
            entry = grouped.setdefault(key, {"anchor": lemma, "positives": []})
            if definition not in entry["positives"]:
                entry["positives"].append(definition)
    keys = sorted(grouped)
    if limit is not None and limit < len(keys):
        keys = sorted(random.Random(seed).sample(keys, limit))
    return [canonical(grouped[k]["anchor"], grouped[k]["positives"]) for k in keys]


def synset_rows(limit: int, seed: int = 0) -> list[dict[str, Any]]:
    """One row per synset (its first lemma, its gloss), lemmas and glosses unique: ST-comparable pairs."""
    seen_lemma, seen_gloss, rows = set(), set(), []
    for lemmas, definition in synsets():
        key = normalize_key(lemmas[0])
        if key in seen_lemma or definition in seen_gloss:
            continue
        seen_lemma.add(key)
        seen_gloss.add(definition)
        rows.append(canonical(lemmas[0], [definition]))
    return random.Random(seed).sample(rows, limit) if limit < len(rows) else rows


def distinct_gloss_rows(texts: int) -> list[dict[str, Any]]:
    """Up to `texts` pairs rows, one per distinct "lemma: gloss" text, in WordNet order."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, (lemmas, definition) in enumerate(synsets()):
        for lemma in lemmas:
            text = f"{lemma}: {definition}"
            if text in seen:
                continue
            seen.add(text)
            rows.append(canonical(f"{lemma} #{number}", [text]))
            if len(rows) >= texts:
                return rows
    return rows


def canonical(anchor: str, positives: list[str]) -> dict[str, Any]:
    return {"id": anchor_id(anchor), "anchor": anchor, "positive": positives[0], "positives": positives,
            "positive_ids": [doc_id(p) for p in positives], "hard_negatives": [], "source": "wordnet"}


def write_compose(store: Store, rows: list[dict[str, Any]], name: str,
                  held_out: list[dict[str, Any]] | None = None) -> Artifact:
    """A compose-like artifact whose train split is `rows`; `held_out` rows go to test (and the corpus)."""
    held_out = held_out or []

    def build(work: Path) -> StageResult:
        write_jsonl(work / pairs_file("train"), rows)
        write_jsonl(work / pairs_file("dev"), [])
        write_jsonl(work / pairs_file("test"), held_out)
        corpus: dict[str, str] = {}
        for r in rows + held_out:
            for pid, text in zip(r["positive_ids"], r["positives"]):
                corpus.setdefault(pid, text)
        write_jsonl(work / CORPUS_FILE, ({"id": k, "text": v} for k, v in corpus.items()))
        return StageResult(stats={"anchors": len(rows), "corpus_size": len(corpus)})

    return store.run(stage="compose", format_version=1, config={"benchmark": name, "rows": len(rows),
                                                               "held_out": len(held_out)},
                     inputs=[], build=build).artifact
