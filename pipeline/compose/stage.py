"""The compose stage: glossary tables in, cleaned and split training pairs out.

Reads CSV/TSV/JSONL/Parquet files (or a crawl artifact's glossary.csv), cleans every text, groups
the definitions of a term under one anchor, splits by anchor and writes the canonical pairs files
plus a corpus of every positive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.compose.cleaning import clean_text, drop_reason
from pipe_embed.pipeline.compose.readers import RawRow, file_format, read_rows
from pipe_embed.pipeline.compose.splits import split_of
from pipe_embed.pipeline.core.config import as_dict, option
from pipe_embed.pipeline.core.console import info, track
from pipe_embed.pipeline.core.errors import ConfigError, InputError, PipeError
from pipe_embed.pipeline.core.hashing import hash_file
from pipe_embed.pipeline.core.pairs import (
    CORPUS_FILE,
    SPLITS,
    anchor_id,
    doc_id,
    normalize_key,
    pairs_file,
    require_file,
    write_jsonl,
)
from pipe_embed.pipeline.core.store import Artifact, RunOutcome, StageResult, Store

STAGE = "compose"
FORMAT_VERSION = 1
CRAWL_FILE = "glossary.csv"


@dataclass
class ComposeConfig:
    """How glossary rows become training pairs."""

    anchor_col: str | None = option(None, "Column holding the anchor (term/query); auto-detected if unset.")
    positive_col: str | None = option(None, "Column holding the positive (definition); auto-detected if unset.")
    min_anchor_chars: int = option(1, "Drop rows whose cleaned anchor is shorter than this.")
    max_anchor_chars: int = option(200, "Drop rows whose cleaned anchor is longer than this.")
    min_positive_chars: int = option(10, "Drop rows whose cleaned positive is shorter than this.")
    max_positive_chars: int = option(2000, "Drop rows whose cleaned positive is longer than this.")
    dev_fraction: float = option(0.1, "Share of anchors held out for the dev split.")
    test_fraction: float = option(0.1, "Share of anchors held out for the test split.")
    seed: int = option(13, "Seed of the anchor-hash split.")
    hard_k: int = option(0, "BM25 hard negatives added per anchor at compose time (0 = none; `pipe mine` does more).")

    def validate(self) -> None:
        if self.dev_fraction < 0 or self.test_fraction < 0 or self.dev_fraction + self.test_fraction >= 1:
            raise ConfigError("field 'dev_fraction'/'test_fraction': each >= 0 and together < 1")
        if self.min_positive_chars > self.max_positive_chars:
            raise ConfigError("field 'min_positive_chars': larger than max_positive_chars")
        if self.min_anchor_chars > self.max_anchor_chars:
            raise ConfigError("field 'min_anchor_chars': larger than max_anchor_chars")
        if self.hard_k < 0:
            raise ConfigError("field 'hard_k': must be >= 0")


def group_rows(rows: list[RawRow], config: ComposeConfig) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Clean rows, drop bad ones (each counted by reason), merge the definitions of one term into one anchor."""
    dropped: Counter[str] = Counter()
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        anchor = clean_text(row.anchor)
        for raw_positive in row.positives or [""]:  # a row without a positive is dropped and counted
            positive = clean_text(raw_positive)
            reason = drop_reason(anchor, positive, min_anchor_chars=config.min_anchor_chars,
                                 min_positive_chars=config.min_positive_chars,
                                 max_anchor_chars=config.max_anchor_chars,
                                 max_positive_chars=config.max_positive_chars)
            if reason:
                dropped[reason] += 1
                continue
            key = normalize_key(anchor)
            group = groups.setdefault(key, {"anchor": anchor, "positives": [], "keys": set(),
                                            "negatives": [], "source": row.source})
            pkey = normalize_key(positive)
            if pkey in group["keys"]:
                dropped["duplicate"] += 1
                continue
            group["keys"].add(pkey)
            group["positives"].append(positive)
        if anchor and normalize_key(anchor) in groups:
            group = groups[normalize_key(anchor)]
            for negative in row.negatives:
                text = clean_text(negative)
                if text and normalize_key(text) not in group["keys"] and text not in group["negatives"]:
                    group["negatives"].append(text)
    records = []
    for group in groups.values():
        negatives = [n for n in group["negatives"] if normalize_key(n) not in group["keys"]]
        records.append({
            "id": anchor_id(group["anchor"]),
            "anchor": group["anchor"],
            "positive": group["positives"][0],
            "positives": group["positives"],
            "positive_ids": [doc_id(p) for p in group["positives"]],
            "hard_negatives": negatives,
            "source": group["source"],
        })
    return records, dropped


def read_inputs(paths: list[Path], config: ComposeConfig) -> list[RawRow]:
    """All raw rows of all input files, in order."""
    rows: list[RawRow] = []
    for path in paths:
        rows.extend(track(read_rows(path, config.anchor_col, config.positive_col),
                          f"read {path.name}"))
    return rows


def _empty_reason(rows_read: int, dropped: Counter[str], config: ComposeConfig) -> str:
    if rows_read == 0:
        return "the input has no data rows"
    detail = ", ".join(f"{k}={v}" for k, v in dropped.most_common())
    return (f"no pairs left after cleaning {rows_read} rows (dropped: {detail}); "
            f"check the columns or lower min_positive_chars (now {config.min_positive_chars})")


NegativesFn = Callable[..., list[dict[str, Any]]]


def compose_pairs(paths: list[Path], config: ComposeConfig, workdir: Path,
                  negatives: NegativesFn | None = None) -> StageResult:
    """Build the compose artifact's files in `workdir` and return its stats.

    `negatives(records, k=…)` adds `hard_k` negatives per anchor; the caller hands in the miner
    (the CLI passes BM25 from pipe_embed.mining), since a stage never imports another stage.
    """
    rows = read_inputs(paths, config)
    records, dropped = group_rows(rows, config)
    if not records:
        raise PipeError(_empty_reason(len(rows), dropped, config))
    if config.hard_k > 0:
        if negatives is None:
            raise ConfigError("field 'hard_k': compose needs a negatives miner for hard_k > 0",
                              hint="run `pipe compose --hard-k K` or pass negatives=bm25_negatives_for_pairs")
        records = negatives(records, k=config.hard_k)
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for record in records:
        split = split_of(record["anchor"], config.dev_fraction, config.test_fraction, config.seed)
        by_split[split].append(record)
    for split, items in by_split.items():
        write_jsonl(workdir / pairs_file(split), items)
    corpus: dict[str, str] = {}
    for record in records:
        for pid, text in zip(record["positive_ids"], record["positives"]):
            corpus.setdefault(pid, text)
    write_jsonl(workdir / CORPUS_FILE, ({"id": k, "text": v} for k, v in corpus.items()))
    pairs_kept = sum(len(r["positives"]) for r in records)
    stats = {
        "rows_read": len(rows),
        "pairs_read": sum(max(len(r.positives), 1) for r in rows),  # = pairs_kept + all dropped
        "pairs_kept": pairs_kept,
        "anchors": len(records),
        "corpus_size": len(corpus),
        "dropped": dict(dropped),
        "splits": {s: len(v) for s, v in by_split.items()},
        "anchors_with_several_positives": sum(1 for r in records if len(r["positives"]) > 1),
        "sources": dict(Counter(r["source"] for r in records)),
    }
    headline = {"anchors": len(records), "pairs": pairs_kept,
                "train/dev/test": "/".join(str(len(by_split[s])) for s in SPLITS),
                "dropped": sum(dropped.values())}
    return StageResult(stats=stats, headline=headline)


def _hash_input(path: Path) -> str:
    try:
        return hash_file(path)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None


def run_compose(store: Store, config: ComposeConfig, inputs: list[Path] | None = None,
                from_ref: str | None = None, force: bool = False,
                negatives: NegativesFn | None = None) -> RunOutcome:
    """Compose from input files or a crawl artifact; a cache hit when nothing changed."""
    if bool(inputs) == bool(from_ref):
        raise PipeError("give either --input FILE (one or more) or --from crawl@latest",
                        hint="e.g. pipe compose --input glossary.csv")
    upstream: list[Artifact] = []
    if from_ref:
        crawl = store.resolve(from_ref)
        source = crawl.file(CRAWL_FILE)
        if not source.is_file():
            raise PipeError(f"{crawl.ref} has no {CRAWL_FILE}", hint="compose from a crawl artifact")
        paths = [source]
        upstream = [crawl]
        extra: dict[str, Any] = {}
    else:
        paths = [require_file(p) for p in inputs or []]
        for path in paths:
            file_format(path)
        extra = {"input_files": [{"name": p.name, "sha256": _hash_input(p)} for p in paths]}
    info(f"composing pairs from {', '.join(str(p) for p in paths)}")
    return store.run(stage=STAGE, format_version=FORMAT_VERSION, config=as_dict(config),
                     inputs=upstream, extra=extra, force=force,
                     build=lambda work: compose_pairs(paths, config, work, negatives))
