"""Pairs rows -> the training table: columns anchor, positive, negative_1..k (one row per positive).

sentence-transformers' losses need every row to have the same number of columns, but mining leaves
some anchors with fewer negatives than others (a margin filter removes candidates that are too
close to the positive). Dropping those anchors, as `mine_hard_negatives(output_format="n-tuple")`
does, can silently lose half the data. Here they stay: with `pad="random"` their missing negative
columns are filled with positives of *other* anchors, drawn with a seeded generator. Such a filler
is exactly what an in-batch negative is (another anchor's definition), so it adds no false signal;
it only costs the compute of encoding it. Texts that equal one of the anchor's own positives, its
anchor or its mined negatives are never drawn. `pad="drop"` reproduces the n-tuple behaviour for
comparison. The counts of padded and dropped anchors go into the artifact's stats.

An anchor with several positives (a term with several definitions) gives one row per positive; the
rows share the anchor text, so the NoDuplicatesBatchSampler never puts two of them in one batch
(where each would be the other's false negative).

What the rows keep depends on the loss (see training.losses.base.Loss): a loss that takes no mined
negatives gets anchor and positive only; a loss that reads scores (distillation from the miner's
scores) gets a `label` column of [positive_score, negative_score_1..k], and anchors whose kept
negatives are not all scored are dropped (a padded filler has no score), counted in the stats.

With `stream`, the pairs file is never held in memory: one pass counts rows and negatives and
keeps a bounded sample of positives to pad from, then every pass over the data reads the file
again, line by line, into a shuffle buffer and a streaming no-duplicates batcher (see `stream_rows`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipe_embed.pipeline.core.pairs import (
    PairRow,
    iter_jsonl,
    normalize_key,
    read_pairs,
    to_canonical,
)

SHUFFLE_BUFFER = 10_000  # rows held at once to shuffle a streamed file
PAD_POOL = 10_000  # positives sampled (reservoir) to pad streamed rows short of negatives


@dataclass
class TrainingRows:
    """The column-wise training table and what building it did to the data."""

    columns: dict[str, list[str]]
    stats: dict[str, Any] = field(default_factory=dict)
    stream: Callable[[], Iterator[dict[str, str]]] | None = None  # streamed: rows made on each pass

    @property
    def num_rows(self) -> int:
        if self.stream is not None:
            return int(self.stats["rows"])
        return len(self.columns.get("anchor", []))

    @property
    def num_negatives(self) -> int:
        if self.stream is not None:
            return int(self.stats["negatives_per_row"])
        return sum(1 for name in self.columns if name.startswith("negative_"))


def negative_columns(k: int) -> list[str]:
    """Names of the k negative columns, in the order the loss reads them."""
    return [f"negative_{i}" for i in range(1, k + 1)]


def _scored_negatives(row: PairRow, exclude: set[str]) -> list[tuple[str, float | None]]:
    """The row's mined negatives in order with their scores (None where the row has none), without
    duplicates or texts equal to a positive/anchor."""
    seen = set(exclude)
    scores = row.get("negative_scores") or []
    kept: list[tuple[str, float | None]] = []
    for i, text in enumerate(row.get("hard_negatives") or []):
        if not isinstance(text, str) or not text.strip():
            continue
        key = normalize_key(text)
        if key in seen:
            continue
        seen.add(key)
        score = scores[i] if i < len(scores) and isinstance(scores[i], (int, float)) else None
        kept.append((text, score))
    return kept


def _clean_negatives(row: PairRow, exclude: set[str]) -> list[str]:
    """The row's mined negatives in order, without duplicates or texts equal to a positive/anchor."""
    return [text for text, _score in _scored_negatives(row, exclude)]


def _row_scores(row: PairRow, negatives: list[tuple[str, float | None]]) -> list[float] | None:
    """[positive_score, negative scores…] of a row's kept negatives; None when one of them is missing."""
    positive = row.get("positive_score")
    values = [positive, *(score for _text, score in negatives)]
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return numbers if len(numbers) == len(values) else None


def _prepare(row: PairRow) -> tuple[list[str], set[str], list[str]]:
    """A row's positives, the normalised texts its negatives must avoid, and its cleaned negatives."""
    positives = [p for p in (row.get("positives") or [row["positive"]]) if isinstance(p, str) and p.strip()]
    exclude = {normalize_key(p) for p in positives} | {normalize_key(row["anchor"])}
    return positives, exclude, _clean_negatives(row, exclude)


def build_rows(rows: Iterable[PairRow], *, max_negatives: int = 0,
               pad: Literal["random", "drop"] = "random", seed: int = 42, with_negatives: bool = True,
               scores: bool = False) -> TrainingRows:
    """Canonical pairs rows -> training columns with exactly k negatives per row (see module doc).

    `max_negatives` 0 takes k = the most negatives any anchor has; anchors with more are truncated
    to their first (hardest) k. `with_negatives` False: no negative columns (k = 0). `scores`: a `label`
    column of the kept texts' scores; anchors short of scored negatives are dropped, not padded.
    """
    prepared = [(row, *_prepare(row)) for row in rows]
    most = max((len(negs) for *_, negs in prepared), default=0)
    k = 0 if not with_negatives else min(max_negatives, most) if max_negatives > 0 else most

    pool = sorted({p for _, positives, _, _ in prepared for p in positives})
    rng = random.Random(seed)
    columns: dict[str, list[Any]] = {"anchor": [], "positive": [], **{c: [] for c in negative_columns(k)}}
    if scores:
        columns["label"] = []
    counts: Counter[str] = Counter()
    for row, positives, exclude, negatives in prepared:
        counts["anchors"] += 1
        if len(negatives) > k:
            counts["anchors_truncated"] += 1
        negatives = negatives[:k]
        missing = k - len(negatives)
        label = None
        if scores:
            label = _row_scores(row, _scored_negatives(row, exclude)[:k])
            if label is None or missing:
                counts["anchors_dropped_short" if missing else "anchors_without_scores"] += 1
                continue
        if missing:
            if pad == "drop":
                counts["anchors_dropped_short"] += 1
                continue
            fill = _draw_fillers(pool, missing, exclude | {normalize_key(n) for n in negatives}, rng)
            if len(fill) < missing:
                counts["anchors_dropped_short"] += 1  # corpus too small to pad from
                continue
            counts["anchors_padded"] += 1
            counts["negatives_padded"] += missing
            negatives = negatives + fill
        if not row.get("hard_negatives"):
            counts["anchors_without_mined"] += 1
        if len(positives) > 1:
            counts["anchors_multi_positive"] += 1
        for positive in positives:
            columns["anchor"].append(row["anchor"])
            columns["positive"].append(positive)
            for name, text in zip(negative_columns(k), negatives):
                columns[name].append(text)
            if label is not None:
                columns["label"].append(label)
            counts["rows"] += 1
    stats = {"anchors": counts["anchors"], "rows": counts["rows"], "negatives_per_row": k,
             "anchors_padded": counts["anchors_padded"], "negatives_padded": counts["negatives_padded"],
             "anchors_dropped_short": counts["anchors_dropped_short"],
             "anchors_truncated": counts["anchors_truncated"],
             "anchors_without_mined": counts["anchors_without_mined"],
             "anchors_multi_positive": counts["anchors_multi_positive"], "pad_negatives": pad}
    if scores:
        stats["anchors_without_scores"] = counts["anchors_without_scores"]
    return TrainingRows(columns=columns, stats=stats)


def _draw_fillers(pool: list[str], count: int, exclude: set[str], rng: random.Random) -> list[str]:
    """Up to `count` distinct pool texts whose normalised form is not excluded."""
    picked: list[str] = []
    taken = set(exclude)
    attempts = 0
    while len(picked) < count and attempts < count * 20 and pool:
        attempts += 1
        text = pool[rng.randrange(len(pool))]
        key = normalize_key(text)
        if key in taken:
            continue
        taken.add(key)
        picked.append(text)
    if len(picked) < count:  # a tiny pool: scan it in order instead of guessing
        for text in pool:
            key = normalize_key(text)
            if len(picked) == count:
                break
            if key not in taken:
                taken.add(key)
                picked.append(text)
    return picked


# -- streaming: a pairs file larger than memory --------------------------------------------------------

def iter_pairs(path: str | Path) -> Iterator[PairRow]:
    """Canonical rows of a pairs JSONL file, one line at a time (a bad line names file and line)."""
    path = Path(path)
    for number, obj in iter_jsonl(path, "pairs file"):
        yield to_canonical(obj, path, number)


class PairsFile:
    """A pairs file read lazily: every iteration opens it again and yields canonical rows one by one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __iter__(self) -> Iterator[PairRow]:
        return iter_pairs(self.path)

    def __repr__(self) -> str:
        return f"PairsFile({str(self.path)!r})"


def load_pairs(path: str | Path, *, stream: bool = False) -> list[PairRow] | PairsFile:
    """The rows of a pairs file: all of them in a list, or (stream) a lazy re-readable PairsFile."""
    return PairsFile(path) if stream else read_pairs(path)


def shuffled(rows: Iterable[Any], buffer: int, rng: random.Random) -> Iterator[Any]:
    """Rows in a random order while holding at most `buffer` of them (a streaming shuffle)."""
    held: list[Any] = []
    for row in rows:
        if len(held) < buffer:
            held.append(row)
            continue
        i = rng.randrange(buffer)
        yield held[i]
        held[i] = row
    rng.shuffle(held)
    yield from held


def pack_batches(rows: Iterable[dict[str, str]], batch_size: int,
                 max_waiting: int = SHUFFLE_BUFFER) -> Iterator[dict[str, str]]:
    """Rows regrouped so that each run of `batch_size` rows holds no text twice (streaming no-duplicates).

    What NoDuplicatesBatchSampler does for an in-memory table, for a stream: a row sharing a text
    with the batch being filled waits for a later batch. The data loader cuts the stream every
    `batch_size` rows, so only whole batches leave until the input ends; the last few rows fill
    the tail even if a text repeats (rare: it takes rows that conflict with every batch left), and
    at most `max_waiting` rows wait (a text shared by very many rows may then repeat in a batch).
    """
    batch: list[dict[str, str]] = []
    keys: set[str] = set()
    waiting: list[tuple[dict[str, str], set[str]]] = []

    def place(row: dict[str, str], row_keys: set[str]) -> bool:
        if row_keys & keys:
            return False
        batch.append(row)
        keys.update(row_keys)
        return True

    def flush() -> Iterator[dict[str, str]]:
        """Yield the full batch, start a new one from the waiting rows; repeat while batches fill."""
        nonlocal batch, keys, waiting
        while len(batch) == batch_size:
            yield from batch
            batch, keys = [], set()
            still = []
            for row, row_keys in waiting:
                if len(batch) == batch_size or not place(row, row_keys):
                    still.append((row, row_keys))
            waiting = still

    def force_oldest() -> None:
        row, row_keys = waiting.pop(0)
        batch.append(row)
        keys.update(row_keys)

    for row in rows:
        row_keys = {normalize_key(text) for text in row.values()}
        if not place(row, row_keys):
            waiting.append((row, row_keys))
            if len(waiting) > max_waiting:  # one text in very many rows: bound the memory, allow a repeat
                force_oldest()
        yield from flush()
    while waiting:  # the input ended: no later batch for rows that conflict with every one left
        still = []
        for row, row_keys in waiting:
            if len(batch) == batch_size or not place(row, row_keys):
                still.append((row, row_keys))
        waiting = still
        if waiting and len(batch) < batch_size:
            force_oldest()
        yield from flush()
    yield from batch


def stream_rows(source: Iterable[PairRow], *, batch_size: int, max_negatives: int = 0,
                pad: Literal["random", "drop"] = "random", seed: int = 42, with_negatives: bool = True,
                buffer: int = SHUFFLE_BUFFER, pool_size: int = PAD_POOL) -> TrainingRows:
    """`build_rows` for data read lazily: `source` is iterated afresh on every pass and never held.

    One planning pass counts anchors, rows and negatives (the same stats as build_rows) and keeps a
    reservoir sample of `pool_size` positives to pad from. Each pass of training then reads the source
    again, pads or drops short anchors, shuffles through a `buffer`-row window (seed + pass number)
    and packs batches free of duplicate texts. `with_negatives` False: no negative columns. (A loss that
    reads scores cannot stream: TrainConfig refuses the pair.)
    """
    rng = random.Random(seed)
    by_count: Counter[int] = Counter()  # cleaned negatives -> anchors
    rows_by_count: Counter[int] = Counter()  # cleaned negatives -> rows (one per positive)
    unmined_by_count: Counter[int] = Counter()
    multi_by_count: Counter[int] = Counter()
    pool: list[str] = []
    seen = 0
    for row in source:
        positives, _exclude, negatives = _prepare(row)
        n = len(negatives)
        by_count[n] += 1
        rows_by_count[n] += len(positives)
        unmined_by_count[n] += not row.get("hard_negatives")
        multi_by_count[n] += len(positives) > 1
        for text in positives:
            seen += 1
            if len(pool) < pool_size:
                pool.append(text)
            else:
                j = rng.randrange(seen)
                if j < pool_size:
                    pool[j] = text
    most = max(by_count, default=0)
    k = 0 if not with_negatives else min(max_negatives, most) if max_negatives > 0 else most
    short = [n for n in by_count if n < k]
    kept = [n for n in by_count if n >= k or pad == "random"]
    stats = {"anchors": sum(by_count.values()), "rows": sum(rows_by_count[n] for n in kept),
             "negatives_per_row": k,
             "anchors_padded": sum(by_count[n] for n in short) if pad == "random" else 0,
             "negatives_padded": sum((k - n) * by_count[n] for n in short) if pad == "random" else 0,
             "anchors_dropped_short": 0 if pad == "random" else sum(by_count[n] for n in short),
             "anchors_truncated": sum(by_count[n] for n in by_count if n > k),
             "anchors_without_mined": sum(unmined_by_count[n] for n in kept),
             "anchors_multi_positive": sum(multi_by_count[n] for n in kept), "pad_negatives": pad,
             "stream": True}
    names = negative_columns(k)
    passes = 0

    def rows_of_pass(pass_rng: random.Random) -> Iterator[dict[str, str]]:
        for row in source:
            positives, exclude, negatives = _prepare(row)
            negatives = negatives[:k]
            missing = k - len(negatives)
            if missing:
                if pad == "drop":
                    continue
                fill = _draw_fillers(pool, missing, exclude | {normalize_key(n) for n in negatives}, pass_rng)
                if len(fill) < missing:
                    continue  # the pad sample is too small to pad from
                negatives = negatives + fill
            for positive in positives:
                yield {"anchor": row["anchor"], "positive": positive, **dict(zip(names, negatives))}

    def generate() -> Iterator[dict[str, str]]:
        nonlocal passes
        pass_rng = random.Random(seed + passes)
        passes += 1
        yield from pack_batches(shuffled(rows_of_pass(pass_rng), buffer, pass_rng), batch_size)

    return TrainingRows(columns={}, stats=stats, stream=generate)


def to_dataset(rows: TrainingRows) -> Any:
    """The columns as a `datasets.Dataset` in loss order: anchor, positive, negative_1..k.

    Streamed rows become an `IterableDataset` that reads the source on demand, pass after pass.
    """
    from datasets import Dataset, Features, IterableDataset, Value

    if rows.stream is not None:
        names = ["anchor", "positive", *negative_columns(rows.num_negatives)]
        return IterableDataset.from_generator(rows.stream, features=Features(dict.fromkeys(names, Value("string"))))
    return Dataset.from_dict(rows.columns)


__all__ = [
    "PairsFile",
    "TrainingRows",
    "build_rows",
    "iter_pairs",
    "load_pairs",
    "negative_columns",
    "pack_batches",
    "shuffled",
    "stream_rows",
    "to_dataset",
]
