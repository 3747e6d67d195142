"""Exports of mined pairs for other tools: FlagEmbedding, sentence-transformers, LexDPR, HF datasets.

- `flag`: FlagEmbedding fine-tuning JSONL, `{"query", "pos": [...], "neg": [...]}`; anchors without
  any negative are left out (FlagEmbedding cannot sample from an empty list).
- `st-ntuple`: `{"anchor", "positive", "negative_1" … "negative_n"}`; the columns must be the same
  in every row, so only anchors with all n negatives are written (the rest are counted).
- `st-triplet`: one `{"anchor", "positive", "negative"}` row per mined negative.
- `lexdpr`: LexDPR's id-based form, `lexdpr/queries.jsonl` of `{"query_id", "query_text",
  "positive_passages": [ids], "hard_negatives": [ids]}` and `lexdpr/corpus.jsonl` of `{"id", "text"}`
  (the whole candidate corpus); the ids are the pairs rows' own, so a user's ids come back unchanged.
- `hf`: a Hugging Face `datasets` DatasetDict (`train`: the pairs rows) written by `save_to_disk`, with
  explicit column types, for `datasets.load_from_disk`.
The canonical `pairs.jsonl` keeps every anchor whatever the export leaves out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.pairs import PairRow, doc_id, hf_schema, write_jsonl

FORMATS = ("flag", "st-ntuple", "st-triplet", "lexdpr", "hf")
FILE_NAMES = {"flag": "flag.jsonl", "st-ntuple": "st-ntuple.jsonl", "st-triplet": "st-triplet.jsonl",
              "lexdpr": "lexdpr", "hf": "hf"}  # the last two are directories


def flag_rows(rows: Sequence[PairRow]) -> Iterator[dict[str, Any]]:
    """FlagEmbedding rows: query, every positive, the mined negatives."""
    for row in rows:
        if row.get("hard_negatives"):
            yield {"query": row["anchor"], "pos": list(row.get("positives") or [row["positive"]]),
                   "neg": list(row["hard_negatives"])}


def ntuple_rows(rows: Sequence[PairRow], num_negatives: int) -> Iterator[dict[str, Any]]:
    """sentence-transformers n-tuples: anchors with exactly num_negatives negatives."""
    for row in rows:
        negatives = row.get("hard_negatives") or []
        if len(negatives) >= num_negatives:
            out = {"anchor": row["anchor"], "positive": row["positive"]}
            out.update({f"negative_{i}": negatives[i - 1] for i in range(1, num_negatives + 1)})
            yield out


def triplet_rows(rows: Sequence[PairRow]) -> Iterator[dict[str, Any]]:
    """sentence-transformers triplets: one per (anchor, positive, negative)."""
    for row in rows:
        for negative in row.get("hard_negatives") or []:
            yield {"anchor": row["anchor"], "positive": row["positive"], "negative": negative}


def lexdpr_queries(rows: Sequence[PairRow]) -> Iterator[dict[str, Any]]:
    """LexDPR query rows: the query and its positives and negatives as corpus ids."""
    for row in rows:
        negatives = row.get("hard_negatives") or []
        yield {"query_id": row.get("query_id") or row["id"], "query_text": row["anchor"],
               "positive_passages": list(row.get("positive_ids") or [doc_id(p) for p in row["positives"]]),
               "hard_negatives": list(row.get("negative_ids") or [doc_id(n) for n in negatives])}


def lexdpr_corpus(rows: Sequence[PairRow],
                  corpus: tuple[Sequence[str], Sequence[str]] | None = None) -> list[dict[str, str]]:
    """`{"id", "text"}` of the candidate corpus (when given) and of every id the rows refer to."""
    documents: dict[str, str] = dict(zip(*corpus)) if corpus is not None else {}
    for row in rows:
        positives = row.get("positives") or [row["positive"]]
        negatives = row.get("hard_negatives") or []
        for ids, texts in ((row.get("positive_ids") or [doc_id(p) for p in positives], positives),
                           (row.get("negative_ids") or [doc_id(n) for n in negatives], negatives)):
            for ident, text in zip(ids, texts):
                documents.setdefault(ident, text)
    return [{"id": ident, "text": text} for ident, text in documents.items()]


def write_lexdpr(rows: Sequence[PairRow], directory: Path,
                 corpus: tuple[Sequence[str], Sequence[str]] | None = None) -> dict[str, int]:
    """queries.jsonl and corpus.jsonl in `directory` (LexDPR's layout)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = write_jsonl(directory / "queries.jsonl", lexdpr_queries(rows))
    documents = write_jsonl(directory / "corpus.jsonl", lexdpr_corpus(rows, corpus))
    return {"rows": written, "anchors_left_out": 0, "documents": documents}


def to_hf_dataset(rows: Sequence[PairRow]) -> Any:
    """A `datasets.Dataset` of pairs rows with explicit types (see `hf_schema`)."""
    import datasets

    features, data = hf_schema(rows)
    return datasets.Dataset.from_dict(data, features=features)


def write_hf(rows: Sequence[PairRow], directory: Path) -> dict[str, int]:
    """A DatasetDict (`train`) saved with `save_to_disk`: `datasets.load_from_disk(directory)`."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # pipe shows its own progress
    try:
        datasets.DatasetDict({"train": to_hf_dataset(rows)}).save_to_disk(str(directory))
    finally:
        if shown:
            datasets.enable_progress_bars()
    return {"rows": len(rows), "anchors_left_out": 0}


def export(rows: Sequence[PairRow], formats: Sequence[str], directory: Path, num_negatives: int,
           corpus: tuple[Sequence[str], Sequence[str]] | None = None) -> dict[str, dict[str, int]]:
    """Write each requested format into directory; returns rows written and anchors left out.

    `corpus` (ids, texts) is the candidate corpus, written whole by the `lexdpr` export.
    """
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
        elif fmt == "lexdpr":
            report[fmt] = write_lexdpr(rows, path, corpus)
            continue
        elif fmt == "hf":
            report[fmt] = write_hf(rows, path)
            continue
        else:
            raise ValueError(f"unknown export format {fmt!r}")
        report[fmt] = {"rows": written, "anchors_left_out": left_out}
    return report
