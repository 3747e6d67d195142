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
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pipe_embed.pipeline.core.pairs import normalize_key


@dataclass
class TrainingRows:
    """The column-wise training table and what building it did to the data."""

    columns: dict[str, list[str]]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return len(self.columns.get("anchor", []))

    @property
    def num_negatives(self) -> int:
        return sum(1 for name in self.columns if name.startswith("negative_"))


def negative_columns(k: int) -> list[str]:
    """Names of the k negative columns, in the order the loss reads them."""
    return [f"negative_{i}" for i in range(1, k + 1)]


def _clean_negatives(row: dict[str, Any], exclude: set[str]) -> list[str]:
    """The row's mined negatives in order, without duplicates or texts equal to a positive/anchor."""
    seen = set(exclude)
    kept = []
    for text in row.get("hard_negatives") or []:
        if not isinstance(text, str) or not text.strip():
            continue
        key = normalize_key(text)
        if key in seen:
            continue
        seen.add(key)
        kept.append(text)
    return kept


def build_rows(rows: Sequence[dict[str, Any]], *, max_negatives: int = 0,
               pad: Literal["random", "drop"] = "random", seed: int = 42) -> TrainingRows:
    """Canonical pairs rows -> training columns with exactly k negatives per row (see module doc).

    `max_negatives` 0 takes k = the most negatives any anchor has; anchors with more are truncated
    to their first (hardest) k.
    """
    prepared = []
    for row in rows:
        positives = [p for p in (row.get("positives") or [row["positive"]]) if isinstance(p, str) and p.strip()]
        exclude = {normalize_key(p) for p in positives} | {normalize_key(row["anchor"])}
        prepared.append((row, positives, exclude, _clean_negatives(row, exclude)))
    most = max((len(negs) for *_, negs in prepared), default=0)
    k = min(max_negatives, most) if max_negatives > 0 else most

    pool = sorted({p for _, positives, _, _ in prepared for p in positives})
    rng = random.Random(seed)
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], **{c: [] for c in negative_columns(k)}}
    counts: Counter[str] = Counter()
    for row, positives, exclude, negatives in prepared:
        counts["anchors"] += 1
        if len(negatives) > k:
            counts["anchors_truncated"] += 1
        negatives = negatives[:k]
        missing = k - len(negatives)
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
            counts["rows"] += 1
    stats = {"anchors": counts["anchors"], "rows": counts["rows"], "negatives_per_row": k,
             "anchors_padded": counts["anchors_padded"], "negatives_padded": counts["negatives_padded"],
             "anchors_dropped_short": counts["anchors_dropped_short"],
             "anchors_truncated": counts["anchors_truncated"],
             "anchors_without_mined": counts["anchors_without_mined"],
             "anchors_multi_positive": counts["anchors_multi_positive"], "pad_negatives": pad}
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


def to_dataset(rows: TrainingRows) -> Any:
    """The columns as a `datasets.Dataset` in loss order: anchor, positive, negative_1..k."""
    from datasets import Dataset

    return Dataset.from_dict(rows.columns)


__all__ = ["TrainingRows", "build_rows", "to_dataset", "negative_columns"]
