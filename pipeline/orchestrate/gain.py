"""What mining bought on the user's dev split: a paired bootstrap over per-query scores, said in one sentence.

Pure: per-query scores in, numbers and a plain sentence out. `iterate` feeds it its rounds' dev scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipe_embed.training.evaluate import MIN_QUERIES

RESAMPLES = 2000
CHUNK = 1 << 20  # resampled query indices drawn at once: bounds memory on large dev splits
MORE_DEV = "more dev terms: --dev-fraction, --eval-data"
IN_BATCH_HINT = "--first in-batch measures it"
Verdict = Literal["helped", "hurt", "noise", "too small"]


@dataclass(frozen=True)
class Interval:
    """The mean paired difference over the shared queries and its 95% bootstrap percentile interval."""

    mean: float
    low: float
    high: float
    queries: int


@dataclass(frozen=True)
class Scored:
    """One candidate's dev scores: its round (0 = the base model), whether its negatives were mined, its
    metric over the whole dev split (which picks the best round) and per query (None: not kept)."""

    round: int
    mined: bool
    score: float
    per_query: Mapping[str, float] | None


def paired_bootstrap(a: Mapping[str, float], b: Mapping[str, float], resamples: int = RESAMPLES,
                     seed: int = 0) -> Interval:
    """How much `a` scores above `b`, query by query, over the queries both have: the mean difference and
    the 95% percentile interval of its bootstrap resamples (the same seed, the same interval)."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    shared = sorted(a.keys() & b.keys())
    if not shared:
        nan = float("nan")
        return Interval(nan, nan, nan, 0)
    diff = np.array([a[q] - b[q] for q in shared], dtype=np.float64)
    n = len(diff)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK // n)
    means = [diff[rng.integers(0, n, size=(min(per_chunk, resamples - start), n))].mean(axis=1)
             for start in range(0, resamples, per_chunk)]
    low, high = np.percentile(np.concatenate(means), [2.5, 97.5])
    return Interval(float(diff.mean()), float(low), float(high), n)


def verdict(interval: Interval) -> Verdict:
    """helped / hurt when the interval excludes 0 on that side, noise when it holds 0, too small under MIN_QUERIES."""
    if interval.queries < MIN_QUERIES:
        return "too small"
    if interval.low > 0:
        return "helped"
    if interval.high < 0:
        return "hurt"
    return "noise"


def _signed(value: float) -> str:
    """+0.021 / −0.010 (a true minus sign); a value that rounds to zero is +0.000."""
    text = f"{value:+.3f}"
    return "+0.000" if text in ("+0.000", "-0.000") else text.replace("-", "−")


def metric_label(metric: str) -> str:
    """MRR@10 and NDCG@10 as they are usually written; recall@k as is."""
    return metric.upper() if metric.startswith(("mrr", "ndcg", "map")) else metric


def mining_sentence(interval: Interval, metric: str, treated: str, reference: str, *,
                    isolates_mining: bool = True) -> str:
    """One plain sentence: what `treated` scored over `reference` on dev, the interval, and what that means.

    `isolates_mining` False: the reference is the base model, so the gain is fine-tuning's, and the sentence
    says mining's own share was not measured."""
    effect = "mining" if isolates_mining else "fine-tuning"
    if interval.queries == 0:
        return f"{treated} and {reference} share no scored dev term, so {effect}'s effect was not measured."
    terms = f"{interval.queries} dev term{'' if interval.queries == 1 else 's'}"
    head = (f"On your {terms}, {treated} scored {_signed(interval.mean)} {metric_label(metric)} over {reference}, "
            f"95% interval [{_signed(interval.low)}, {_signed(interval.high)}]")
    call = verdict(interval)
    if call == "too small":
        tail = f"the dev split is too small to tell (under {MIN_QUERIES} terms; {MORE_DEV})"
    elif call == "noise":
        tail = f"the difference is within noise, so {effect}'s effect is not measurable on this dev split ({MORE_DEV})"
    else:
        tail = f"{effect} {call}"
    if not isolates_mining:
        tail += ("; mining's own share was not measured, since round 1 already mined and there is no in-batch "
                 f"round to compare with ({IN_BATCH_HINT})")
    return f"{head}: {tail}."


def no_mined_round_sentence(planned_rounds: int) -> str:
    """The sentence when round 1 trained on in-batch negatives and no mined round followed."""
    why = ("--rounds 1 runs round 1 only; 2 or more mine with its model" if planned_rounds <= 1
           else "iterate stopped after round 1, which did not beat the base model on dev beyond noise")
    return ("Mining's effect was not measured: only round 1 (in-batch negatives only) ran, so there is no mined "
            f"round to compare with ({why}).")


def _best(candidates: Sequence[Scored]) -> Scored:
    return max(candidates, key=lambda s: (s.score, -s.round))  # the earliest on ties, as iterate picks


def mining_gain(base: Scored, rounds: Sequence[Scored], metric: str, planned_rounds: int, *,
                resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """What mining bought, as rounds.json keeps it: the rounds compared, the interval, the verdict, the sentence.

    With an in-batch round, the best mined round is compared with it (mining's own effect); without one,
    the best round is compared with the base model (fine-tuning's effect, mining's share unmeasured)."""
    numbers: dict[str, Any] = {"metric": metric, "treated_round": None, "reference_round": None,
                               "isolates_mining": None, "mean": None, "low": None, "high": None, "queries": 0,
                               "verdict": None, "resamples": resamples, "seed": seed}
    in_batch = [r for r in rounds if not r.mined]
    mined = [r for r in rounds if r.mined]
    if not mined:
        return {**numbers, "sentence": no_mined_round_sentence(planned_rounds)}
    treated = _best(mined)
    isolates = bool(in_batch)
    reference = min(in_batch, key=lambda r: r.round) if isolates else base
    labels = ((f"mined negatives (round {treated.round})", f"in-batch negatives only (round {reference.round})")
              if isolates else (f"fine-tuning with mined negatives (round {treated.round})", "the base model"))
    numbers.update(treated_round=treated.round, reference_round=reference.round, isolates_mining=isolates)
    if treated.per_query is None or reference.per_query is None:
        return {**numbers, "sentence": f"What mining bought was not measured: the dev scores of {labels[0]} or "
                                       f"{labels[1]} were kept without per-query {metric_label(metric)}."}
    interval = paired_bootstrap(treated.per_query, reference.per_query, resamples, seed)
    if interval.queries:
        numbers.update(mean=interval.mean, low=interval.low, high=interval.high, queries=interval.queries,
                       verdict=verdict(interval))
    return {**numbers, "sentence": mining_sentence(interval, metric, *labels, isolates_mining=isolates)}


__all__ = ["Interval", "Scored", "metric_label", "mining_gain", "mining_sentence", "no_mined_round_sentence",
           "paired_bootstrap", "verdict"]
