"""The compose stage: glossary tables in, cleaned and split training pairs out.

Reads CSV/TSV/JSONL/Parquet files (or a crawl artifact's glossary.csv), cleans every text, groups
the definitions of a term under one anchor, splits by anchor and writes the canonical pairs files
plus a corpus of every positive.

Id-based input (LexDPR queries with `--corpus-file`) keeps the user's document ids: they replace the
content-hash ids in `positive_ids`, `negative_ids` and `corpus.jsonl` (one id space, so mine, eval and
the exports need no mapping), every document of the corpus file joins the corpus, and rows gain
`query_id` and `negative_ids`. Columns named in `group_cols` that the input has (the crawler's section
and page) are carried as a `group` dict on every pairs and corpus row, for `pipe mine --same-group`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.compose.cleaning import CLEANING_CHANGES, clean_text, drop_reason
from pipe_embed.pipeline.compose.corpus_file import CorpusFile, read_corpus_file
from pipe_embed.pipeline.compose.readers import RawRow, file_format, read_rows
from pipe_embed.pipeline.compose.splits import split_of
from pipe_embed.pipeline.core.config import option
from pipe_embed.pipeline.core.console import info, track
from pipe_embed.pipeline.core.errors import ConfigError, InputError, PipeError
from pipe_embed.pipeline.core.hashing import hash_file
from pipe_embed.pipeline.core.pairs import (
    CORPUS_FILE,
    SPLITS,
    PairRow,
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
    test_fraction: float = option(0.0, "Share of anchors held out for the test split (0 = none: every term trains; "
                                       "set e.g. 0.1 for an unbiased score, since iterate refits on train + dev).")
    seed: int = option(13, "Seed of the anchor-hash split.")
    hard_k: int = option(0, "BM25 hard negatives added per anchor at compose time (0 = none; `pipe mine` does more).")
    corpus_file: str | None = option(None, "JSONL of {id, text} that id-based input (query_text, positive_passages ids) refers to; its documents join the corpus with their ids.",
                                     versioned=False)  # its content (sha256) is in the version, not its path
    group_cols: list[str] = option(["section", "page"], "Columns carried into each pairs and corpus row's `group`, for `pipe mine --same-group COLUMN` (those an input lacks are skipped).")

    def validate(self) -> None:
        if self.dev_fraction < 0 or self.test_fraction < 0 or self.dev_fraction + self.test_fraction >= 1:
            raise ConfigError("field 'dev_fraction'/'test_fraction': each >= 0 and together < 1")
        if self.min_positive_chars > self.max_positive_chars:
            raise ConfigError("field 'min_positive_chars': larger than max_positive_chars")
        if self.min_anchor_chars > self.max_anchor_chars:
            raise ConfigError("field 'min_anchor_chars': larger than max_anchor_chars")
        if self.hard_k < 0:
            raise ConfigError("field 'hard_k': must be >= 0")
        if any(not c.strip() for c in self.group_cols):
            raise ConfigError("field 'group_cols': a column name is empty")
        if self.anchor_col is not None and self.anchor_col == self.positive_col:
            raise ConfigError(f"fields 'anchor_col' and 'positive_col': both name the column '{self.anchor_col}'",
                              hint="the anchor (term) and the positive (definition) must come from different columns")


def group_rows(rows: list[RawRow], config: ComposeConfig, known_ids: dict[str, str] | None = None,
               group_keys: Sequence[str] = (), changes: Counter[str] | None = None,
               ) -> tuple[list[PairRow], Counter[str]]:
    """Clean rows, drop bad ones (each counted by reason), merge the definitions of one term into one anchor.

    A positive's id is the user's (id-based rows), else the id of the same text in the corpus file
    (`known_ids`: cleaned text -> id), else a hash of its content. Rows gain `negative_ids` and
    `query_id` when any input row had ids, and a `group` dict (every key in every row, "" when
    missing) when any carried column was found: a file then has one shape in every row.
    """
    known_ids = known_ids or {}
    dropped: Counter[str] = Counter()
    groups: dict[str, dict[str, Any]] = {}
    with_ids = False
    keys = list(group_keys)
    for row in rows:
        with_ids = with_ids or row.positive_ids is not None
        keys.extend(k for k in row.group if k not in keys)
        anchor = clean_text(row.anchor, changes)
        ids = row.positive_ids if row.positive_ids is not None else [None] * len(row.positives)
        for raw_positive, pid in list(zip(row.positives, ids)) or [("", None)]:  # no positive: dropped, counted
            positive = clean_text(raw_positive, changes)
            reason = drop_reason(anchor, positive, min_anchor_chars=config.min_anchor_chars,
                                 min_positive_chars=config.min_positive_chars,
                                 max_anchor_chars=config.max_anchor_chars,
                                 max_positive_chars=config.max_positive_chars)
            if reason:
                dropped[reason] += 1
                continue
            key = normalize_key(anchor)
            entry = groups.setdefault(key, {"anchor": anchor, "positives": [], "ids": [], "keys": set(),
                                            "negatives": [], "negative_ids": [], "source": row.source,
                                            "query_id": None, "group": {}})
            pkey = normalize_key(positive)
            if pkey in entry["keys"]:
                dropped["duplicate"] += 1
                continue
            entry["keys"].add(pkey)
            entry["positives"].append(positive)
            entry["ids"].append(pid or known_ids.get(positive) or doc_id(positive))
        if anchor and normalize_key(anchor) in groups:
            entry = groups[normalize_key(anchor)]
            entry["query_id"] = entry["query_id"] or row.query_id
            for name, value in row.group.items():
                if value and not entry["group"].get(name):
                    entry["group"][name] = value
            negative_ids = row.negative_ids if row.negative_ids is not None else [None] * len(row.negatives)
            for negative, nid in zip(row.negatives, negative_ids):
                text = clean_text(negative, changes)
                if text and normalize_key(text) not in entry["keys"] and text not in entry["negatives"]:
                    entry["negatives"].append(text)
                    entry["negative_ids"].append(nid or known_ids.get(text) or doc_id(text))
    records: list[PairRow] = []
    for entry in groups.values():
        kept = [i for i, n in enumerate(entry["negatives"]) if normalize_key(n) not in entry["keys"]]
        record: PairRow = {
            "id": anchor_id(entry["anchor"]),
            "anchor": entry["anchor"],
            "positive": entry["positives"][0],
            "positives": entry["positives"],
            "positive_ids": entry["ids"],
            "hard_negatives": [entry["negatives"][i] for i in kept],
            "source": entry["source"],
        }
        if with_ids:
            record["negative_ids"] = [entry["negative_ids"][i] for i in kept]
            record["query_id"] = entry["query_id"] or record["id"]
        if keys:
            record["group"] = {k: entry["group"].get(k, "") for k in keys}
        records.append(record)
    return records, dropped


def read_inputs(paths: list[Path], config: ComposeConfig, corpus: CorpusFile | None = None) -> list[RawRow]:
    """All raw rows of all input files, in order (id-based rows resolved against `corpus`)."""
    rows: list[RawRow] = []
    for path in paths:
        rows.extend(track(read_rows(path, config.anchor_col, config.positive_col, group_cols=config.group_cols,
                                    corpus=corpus),
                          f"read {path.name}"))
    return rows


def make_corpus(records: list[PairRow], config: ComposeConfig, corpus_file: CorpusFile | None,
                changes: Counter[str] | None = None) -> tuple[list[dict[str, Any]], Counter[str]]:
    """corpus.jsonl rows: every positive, then the corpus file's other documents (cleaned, and dropped
    by the positive length limits, counted, so a text too long to be a positive is no candidate either).

    A document's `group` is its corpus-file row's, else that of the row whose positive it is.
    """
    keys = list(records[0]["group"]) if records and "group" in records[0] else []
    corpus: dict[str, dict[str, Any]] = {}
    for record in records:
        for pid, text in zip(record["positive_ids"], record["positives"]):
            if pid not in corpus:
                corpus[pid] = {"id": pid, "text": text}
                if keys:
                    own = corpus_file.groups.get(pid) if corpus_file is not None and pid in corpus_file.texts else None
                    corpus[pid]["group"] = {k: own.get(k, "") for k in keys} if own is not None else dict(record["group"])
    dropped: Counter[str] = Counter()
    for ident, raw in (corpus_file.texts.items() if corpus_file is not None else ()):
        if ident in corpus:
            continue
        text = clean_text(raw, changes)
        reason = ("empty" if not text else "too_short" if len(text) < config.min_positive_chars
                  else "too_long" if len(text) > config.max_positive_chars else None)
        if reason:
            dropped[reason] += 1
            continue
        corpus[ident] = {"id": ident, "text": text}
        if keys and corpus_file is not None:  # it is set: the loop runs over its texts
            own = corpus_file.groups.get(ident, {})
            corpus[ident]["group"] = {k: own.get(k, "") for k in keys}
    return list(corpus.values()), dropped


def corpus_ids(corpus_file: CorpusFile | None) -> dict[str, str]:
    """Cleaned text -> the user's id (the first id of a text), so a text-based positive that is a
    document of the corpus file takes that document's id."""
    known: dict[str, str] = {}
    for ident, raw in (corpus_file.texts.items() if corpus_file is not None else ()):
        known.setdefault(clean_text(raw), ident)
    return known


def _empty_reason(rows_read: int, dropped: Counter[str], config: ComposeConfig) -> str:
    if rows_read == 0:
        return "the input has no data rows"
    detail = ", ".join(f"{k}={v}" for k, v in dropped.most_common())
    return (f"no pairs left after cleaning {rows_read} rows (dropped: {detail}); "
            f"check the columns or lower min_positive_chars (now {config.min_positive_chars})")


NegativesFn = Callable[..., list[PairRow]]


def compose_pairs(paths: list[Path], config: ComposeConfig, workdir: Path,
                  negatives: NegativesFn | None = None) -> StageResult:
    """Build the compose artifact's files in `workdir` and return its stats.

    `negatives(records, k=…)` adds `hard_k` negatives per anchor; the caller hands in the miner
    (the CLI passes BM25 from pipe_embed.mining), since a stage never imports another stage.
    """
    corpus_file = read_corpus_file(config.corpus_file, config.group_cols) if config.corpus_file else None
    known_ids = corpus_ids(corpus_file)
    rows = read_inputs(paths, config, corpus_file)
    changes: Counter[str] = Counter()
    records, dropped = group_rows(rows, config, known_ids, corpus_file.group_keys if corpus_file else (), changes)
    if not records:
        raise PipeError(_empty_reason(len(rows), dropped, config))
    corpus_rows, corpus_dropped = make_corpus(records, config, corpus_file, changes)
    if config.hard_k > 0:
        if negatives is None:
            raise ConfigError("field 'hard_k': compose needs a negatives miner for hard_k > 0",
                              hint="run `pipe compose --hard-k K` or pass negatives=bm25_negatives_for_pairs")
        if corpus_file is not None:  # the whole corpus are candidates, not only the positives
            records = negatives(records, k=config.hard_k, corpus=[{"id": c["id"], "text": c["text"]} for c in corpus_rows])
        else:
            records = negatives(records, k=config.hard_k)
    by_split: dict[str, list[PairRow]] = {s: [] for s in SPLITS}
    for record in records:
        split = split_of(record["anchor"], config.dev_fraction, config.test_fraction, config.seed)
        by_split[split].append(record)
    for split, items in by_split.items():
        write_jsonl(workdir / pairs_file(split), items)
    write_jsonl(workdir / CORPUS_FILE, corpus_rows)
    pairs_kept = sum(len(r["positives"]) for r in records)
    stats = {
        "rows_read": len(rows),
        "pairs_read": sum(max(len(r.positives), 1) for r in rows),  # = pairs_kept + all dropped
        "pairs_kept": pairs_kept,
        "anchors": len(records),
        "corpus_size": len(corpus_rows),
        "dropped": dict(dropped),
        "splits": {s: len(v) for s, v in by_split.items()},
        "anchors_with_several_positives": sum(1 for r in records if len(r["positives"]) > 1),
        "sources": dict(Counter(r["source"] for r in records)),
        "cleaning": {kind: changes[kind] for kind in CLEANING_CHANGES},
    }
    if corpus_file is not None:
        stats["corpus_file_documents"] = len(corpus_file)
        stats["corpus_file_dropped"] = dict(corpus_dropped)
    if records and "group" in records[0]:
        stats["group_columns"] = {k: len({r["group"][k] for r in records if r["group"][k]}) for k in records[0]["group"]}
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
    if config.corpus_file:
        corpus_path = require_file(config.corpus_file, "corpus file")
        extra["corpus_file"] = {"name": corpus_path.name, "sha256": _hash_input(corpus_path)}
    info(f"composing pairs from {', '.join(str(p) for p in paths)}")
    return store.run(stage=STAGE, format_version=FORMAT_VERSION, config=config,
                     inputs=upstream, extra=extra, force=force,
                     build=lambda work: compose_pairs(paths, config, work, negatives))
