"""What the quality side experiments share: their command line, their glossary x seed splits, their JSONL records."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from quality_data import Glossary, Term, load_glossary, split_terms

RESULTS = Path(__file__).resolve().parent / "results"


def parser(doc: str, out_name: str) -> argparse.ArgumentParser:
    """--glossaries, --seeds and --out (benchmarks/results/<out_name> by default); add the script's own."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0])
    made.add_argument("--glossaries", default="slang,wordnet-300")
    made.add_argument("--seeds", default="0,1,2")
    made.add_argument("--out", type=Path, default=RESULTS / out_name)
    return made


def splits(glossaries: str, seeds: str) -> Iterator[tuple[Glossary, int, list[Term], list[Term]]]:
    """(glossary, seed, training terms, held-out terms) for each comma-listed glossary and seed, as bench_quality splits."""
    for name in glossaries.split(","):
        glossary = load_glossary(name)
        for seed in (int(s) for s in seeds.split(",")):
            yield (glossary, seed, *split_terms(glossary, seed))


def record(out: Path, entry: dict) -> None:
    """Print one result and append it to the JSONL file."""
    print(json.dumps(entry), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(entry) + "\n")
