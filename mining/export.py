"""Exports of mined pairs for other trainers: FlagEmbedding, sentence-transformers n-tuple/triplet.

- `flag`: FlagEmbedding fine-tuning JSONL, `{"query", "pos": [...], "neg": [...]}`; anchors without
  any negative are left out (FlagEmbedding cannot sample from an empty list).
- `st-ntuple`: `{"anchor", "positive", "negative_1" … "negative_n"}`; the columns must be the same
  in every row, so only anchors with all n negatives are written (the rest are counted).
- `st-triplet`: one `{"anchor", "positive", "negative"}` row per mined negative.
The canonical `pairs.jsonl` keeps every anchor whatever the export leaves out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.pairs import write_jsonl

FORMATS = ("flag", "st-ntuple", "st-triplet")
FILE_NAMES = {"flag": "flag.jsonl", "st-ntuple": "st-ntuple.jsonl", "st-triplet": "st-triplet.jsonl"}


def flag_rows(rows: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """FlagEmbedding rows: query, every positive, the mined negatives."""
    for row in rows:
        if row.get("hard_negatives"):
            yield {"query": row["anchor"], "pos": list(row.get("positives") or [row["positive"]]),
                   "neg": list(row["hard_negatives"])}


def ntuple_rows(rows: Sequence[dict[str, Any]], num_negatives: int) -> Iterator[dict[str, Any]]:
    """sentence-transformers n-tuples: anchors with exactly num_negatives negatives."""
    for row in rows:
        negatives = row.get("hard_negatives") or []
        if len(negatives) >= num_negatives:
            out = {"anchor": row["anchor"], "positive": row["positive"]}
            out.update({f"negative_{i}": negatives[i - 1] for i in range(1, num_negatives + 1)})
            yield out


def triplet_rows(rows: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """sentence-transformers triplets: one per (anchor, positive, negative)."""
    for row in rows:
        for negative in row.get("hard_negatives") or []:
            yield {"anchor": row["anchor"], "positive": row["positive"], "negative": negative}


def export(rows: Sequence[dict[str, Any]], formats: Sequence[str], directory: Path,
           num_negatives: int) -> dict[str, dict[str, int]]:
    """Write each requested format into directory; returns rows written and anchors left out."""
    directory.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict[str, int]] = {}
    for fmt in formats:
        path = directory / FILE_NAMES[fmt]
        if fmt == "flag":
            written = write_jsonl(path, flag_rows(rows))
            left_out = sum(1 for r in rows if not r.get("hard_negatives"))
        elif fmt == "st-ntuple":
            written = write_jsonl(path, ntuple_rows(rows, num_negatives))
            left_out = len(rows) - written
        elif fmt == "st-triplet":
            written = write_jsonl(path, triplet_rows(rows))
            left_out = sum(1 for r in rows if not r.get("hard_negatives"))
        else:
            raise ValueError(f"unknown export format {fmt!r}")
        report[fmt] = {"rows": written, "anchors_left_out": left_out}
    return report
