"""Which candidates become hard negatives: exclusion, rank window, score filters, sampling.

Pure functions over (n_queries, k) arrays of candidates ranked best first. The order is:
1. exclusion: never the anchor's positives, texts that normalise to a positive or to the anchor, or
   another definition of the same term (codes below);
2. the rank window `[range_min, range_max)` over the candidates left after exclusion;
3. positive-aware score filters (max/min score, absolute margin, relative margin, then any extra
   masks such as a cross-encoder), each drop counted under the first filter that drops it;
4. `top` or seeded `random` sampling of `num_negatives` from what is left.
Anchors left with fewer negatives are kept as they are and counted, never padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipe_embed.mining.candidates import NO_ID, Candidates

KEEP, POSITIVE, DUPLICATE, OTHER_DEFINITION = 0, 1, 2, 3
EXCLUSION_NAMES = {POSITIVE: "positive", DUPLICATE: "duplicate", OTHER_DEFINITION: "other_definition"}
SCORE_FILTERS = ("max_score", "min_score", "margin", "relative_margin")


@dataclass(frozen=True)
class SelectionParams:
    """The knobs of negative selection (a subset of the mine config)."""

    num_negatives: int = 3
    range_min: int = 0
    range_max: int = 30
    sampling: str = "top"
    seed: int = 42
    max_score: float | None = None
    min_score: float | None = None
    margin: float | None = None
    relative_margin: float | None = None


@dataclass
class Exclusions:
    """Per query: corpus indices that may never be its negatives, each with a reason code."""

    ids: list[np.ndarray]
    codes: list[np.ndarray]

    @classmethod
    def from_sets(cls, positive: Sequence[Sequence[int]], duplicate: Sequence[Sequence[int]] | None = None,
                  other: Sequence[Sequence[int]] | None = None) -> Exclusions:
        """Build from per-query index lists; an index listed under several reasons keeps the first."""
        n = len(positive)
        duplicate = duplicate if duplicate is not None else [[] for _ in range(n)]
        other = other if other is not None else [[] for _ in range(n)]
        ids, codes = [], []
        for q in range(n):
            seen: dict[int, int] = {}
            for code, group in ((POSITIVE, positive[q]), (DUPLICATE, duplicate[q]), (OTHER_DEFINITION, other[q])):
                for i in group:
                    seen.setdefault(int(i), code)
            ids.append(np.fromiter(seen.keys(), dtype=np.int64, count=len(seen)))
            codes.append(np.fromiter(seen.values(), dtype=np.int8, count=len(seen)))
        return cls(ids, codes)

    def max_count(self) -> int:
        """The largest number of excluded texts of any query (how much deeper to retrieve)."""
        return max((len(i) for i in self.ids), default=0)


def exclusion_codes(cand_ids: np.ndarray, exclusions: Exclusions, block: int = 16384) -> np.ndarray:
    """Reason code per candidate slot (0 = allowed), vectorised over blocks of queries."""
    n, k = cand_ids.shape
    out = np.zeros((n, k), dtype=np.int8)
    if n == 0 or not any(len(i) for i in exclusions.ids):
        return out
    if n > block:
        for start in range(0, n, block):
            part = Exclusions(exclusions.ids[start:start + block], exclusions.codes[start:start + block])
            out[start:start + block] = exclusion_codes(cand_ids[start:start + block], part, block)
        return out
    width = int(max(cand_ids.max(initial=0), max((int(i.max()) for i in exclusions.ids if len(i)), default=0))) + 1
    rows = np.repeat(np.arange(n, dtype=np.int64), [len(i) for i in exclusions.ids])
    keys = rows * width + np.concatenate(exclusions.ids)
    values = np.concatenate(exclusions.codes)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    cand_keys = np.arange(n, dtype=np.int64)[:, None] * width + np.where(cand_ids == NO_ID, 0, cand_ids)
    pos = np.clip(np.searchsorted(keys, cand_keys), 0, len(keys) - 1)
    hit = (keys[pos] == cand_keys) & (cand_ids != NO_ID)
    out[hit] = values[pos[hit]]
    return out


def rank_window(allowed: np.ndarray, range_min: int, range_max: int) -> np.ndarray:
    """Slots whose rank among the allowed candidates of their row is in [range_min, range_max)."""
    rank = np.cumsum(allowed, axis=1, dtype=np.int32) - 1
    return allowed & (rank >= range_min) & (rank < range_max)


def max_score_drops(scores: np.ndarray, max_score: float | None) -> np.ndarray:
    """Candidates scoring above max_score (too similar to be a safe negative)."""
    if max_score is None:
        return np.zeros(scores.shape, dtype=bool)
    return scores > max_score


def min_score_drops(scores: np.ndarray, min_score: float | None) -> np.ndarray:
    """Candidates scoring below min_score (too easy to teach anything)."""
    if min_score is None:
        return np.zeros(scores.shape, dtype=bool)
    return scores < min_score


def margin_drops(scores: np.ndarray, positive_scores: np.ndarray, margin: float | None) -> np.ndarray:
    """Absolute margin: drop a negative when negative + margin > positive."""
    if margin is None:
        return np.zeros(scores.shape, dtype=bool)
    return scores + margin > positive_scores[:, None]


def relative_margin_drops(scores: np.ndarray, positive_scores: np.ndarray,
                          relative_margin: float | None) -> np.ndarray:
    """Relative margin: drop when negative > positive - |positive| * m, i.e. > (1 - m) * positive.

    For a positive score >= 0 this is NV-Retriever's TopK-PercPos with percentage 1 - m; the
    |positive| form keeps the threshold below the positive when scores are negative.
    """
    if relative_margin is None:
        return np.zeros(scores.shape, dtype=bool)
    threshold = positive_scores - np.abs(positive_scores) * relative_margin
    return scores > threshold[:, None]


def score_filter_masks(scores: np.ndarray, positive_scores: np.ndarray,
                       params: SelectionParams) -> dict[str, np.ndarray]:
    """The drop mask of every score filter, in the order they are counted."""
    return {
        "max_score": max_score_drops(scores, params.max_score),
        "min_score": min_score_drops(scores, params.min_score),
        "margin": margin_drops(scores, positive_scores, params.margin),
        "relative_margin": relative_margin_drops(scores, positive_scores, params.relative_margin),
    }


def apply_drops(eligible: np.ndarray, drops: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int], np.ndarray]:
    """Remove dropped slots in order: (survivors, count per filter, mask of all dropped slots)."""
    survivors = eligible.copy()
    counts: dict[str, int] = {}
    for name, mask in drops.items():
        hit = survivors & mask
        counts[name] = int(hit.sum())
        survivors &= ~hit
    return survivors, counts, eligible & ~survivors


def sample(survivors: np.ndarray, num_negatives: int, sampling: str = "top", seed: int = 42) -> np.ndarray:
    """Choose up to num_negatives surviving slots per row: the best ranked, or a seeded random draw."""
    if sampling == "top":
        return survivors & (np.cumsum(survivors, axis=1, dtype=np.int32) <= num_negatives)
    if sampling != "random":
        raise ValueError(f"unknown sampling {sampling!r}")
    rng = np.random.default_rng(seed)
    keys = rng.random(survivors.shape)
    keys[~survivors] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")[:, :num_negatives]
    chosen = np.zeros_like(survivors)
    np.put_along_axis(chosen, order, True, axis=1)
    return chosen & survivors


@dataclass
class Selection:
    """The outcome of selection: chosen slots, what each filter dropped, who fell short."""

    chosen: np.ndarray  # (n, k) bool
    dropped: dict[str, int]
    dropped_mask: np.ndarray  # window slots removed by a score filter or an extra mask
    band: np.ndarray  # window slots before the score filters
    survivors: np.ndarray  # window slots that passed every filter (sampling draws from these)
    num_negatives: int
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.counts = self.chosen.sum(axis=1)

    @property
    def short(self) -> int:
        """Anchors left with fewer negatives than asked."""
        return int((self.counts < self.num_negatives).sum())

    def shortfall(self) -> dict[str, int]:
        """How many anchors ended with 0, 1, … negatives (only those short of the target)."""
        values, freq = np.unique(self.counts[self.counts < self.num_negatives], return_counts=True)
        return {str(int(v)): int(f) for v, f in zip(values, freq)}

    def rows(self, cands: Candidates) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ids, scores) of each query's chosen negatives, best first."""
        return [(cands.ids[q][self.chosen[q]], cands.scores[q][self.chosen[q]]) for q in range(len(cands))]


def candidate_band(cands: Candidates, codes: np.ndarray, params: SelectionParams) -> np.ndarray:
    """Allowed slots (not excluded, not empty) that fall inside the rank window."""
    allowed = (codes == KEEP) & (cands.ids != NO_ID)
    return rank_window(allowed, params.range_min, params.range_max)


def exclusion_counts(cands: Candidates, codes: np.ndarray) -> dict[str, int]:
    """How many retrieved candidates each exclusion reason removed."""
    return {name: int(((codes == code) & (cands.ids != NO_ID)).sum()) for code, name in EXCLUSION_NAMES.items()}


def select_negatives(cands: Candidates, exclusions: Exclusions, positive_scores: np.ndarray,
                     params: SelectionParams, extra_drops: dict[str, np.ndarray] | None = None,
                     codes: np.ndarray | None = None) -> Selection:
    """Exclude, window, filter and sample in one call (the whole selection for one method)."""
    codes = exclusion_codes(cands.ids, exclusions) if codes is None else codes
    band = candidate_band(cands, codes, params)
    drops = score_filter_masks(cands.scores, np.asarray(positive_scores, dtype=np.float32), params)
    drops.update(extra_drops or {})
    survivors, counts, dropped_mask = apply_drops(band, drops)
    chosen = sample(survivors, params.num_negatives, params.sampling, params.seed)
    dropped = {**exclusion_counts(cands, codes), **counts}
    return Selection(chosen=chosen, dropped=dropped, dropped_mask=dropped_mask, band=band,
                     survivors=survivors, num_negatives=params.num_negatives)


def refine(selection: Selection, name: str, drops: np.ndarray, params: SelectionParams) -> Selection:
    """Apply one more (expensive) filter to the survivors only, then sample again."""
    survivors, counts, newly = apply_drops(selection.survivors, {name: drops})
    chosen = sample(survivors, params.num_negatives, params.sampling, params.seed)
    return Selection(chosen=chosen, dropped={**selection.dropped, **counts},
                     dropped_mask=selection.dropped_mask | newly, band=selection.band,
                     survivors=survivors, num_negatives=params.num_negatives)
