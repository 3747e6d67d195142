"""What the quality side experiments share: their command line, their glossary x seed splits, their JSONL records."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def budget_epochs(rows: int, batch_size: int = 16, min_steps: int = 100) -> int:
    """At least 3 epochs, raised until `rows` at `batch_size` take `min_steps` optimizer steps (pipe's default budget)."""
    return max(3, math.ceil(min_steps / math.ceil(rows / batch_size)))


def train_and_score(model: Any, dataset: Any, glossary: Glossary, held_out: list[Term], **train: Any) -> tuple[int, float]:
    """The plain script's training (quality_recipes._st_train, `train` overriding loss/batch/epochs), then MRR@10."""
    from quality_recipes import _st_train
    from quality_score import score

    with tempfile.TemporaryDirectory() as tmp:
        steps = _st_train(model, dataset, Path(tmp), **train)["steps"]
    return steps, score(model, glossary, held_out)["mrr@10"]
