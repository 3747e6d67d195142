"""What mining bought: the paired bootstrap on hand-made per-query scores, and each sentence by its content."""

from __future__ import annotations

import numpy as np
import pytest

from pipe_embed.pipeline.orchestrate.gain import (
    Interval,
    Scored,
    mining_gain,
    mining_sentence,
    paired_bootstrap,
    verdict,
)
from pipe_embed.training.evaluate import MIN_QUERIES


def _scores(values: list[float], prefix: str = "q") -> dict[str, float]:
    return {f"{prefix}{i}": v for i, v in enumerate(values)}


def _noisy(n: int, seed: int) -> list[float]:
    return list(np.random.default_rng(seed).uniform(0, 1, n))


# -- the bootstrap -------------------------------------------------------------------------------------

def test_identical_scores_give_the_interval_zero_zero():
    a = _scores(_noisy(50, 1))
    got = paired_bootstrap(a, dict(a))
    assert (got.mean, got.low, got.high, got.queries) == (0.0, 0.0, 0.0, 50)


def test_a_clear_shift_excludes_zero_with_the_right_sign():
    base = _noisy(60, 2)
    noise = np.random.default_rng(3).normal(0, 0.02, 60)
    better = {f"q{i}": b + 0.1 + e for i, (b, e) in enumerate(zip(base, noise))}
    up = paired_bootstrap(better, _scores(base))
    assert up.mean == pytest.approx(0.1 + noise.mean()) and 0.08 < up.low < up.mean < up.high < 0.12
    down = paired_bootstrap(_scores(base), better)
    assert down.high < 0 and down.mean == pytest.approx(-up.mean)
    assert down.low == pytest.approx(-up.high, abs=0.01)


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    a, b = _scores(_noisy(40, 4)), _scores(_noisy(40, 5))
    first = paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a, b, seed=7) == first
    other = paired_bootstrap(a, b, seed=8)
    assert other.mean == first.mean and (other.low, other.high) != (first.low, first.high)
    assert first.low < first.mean < first.high


def test_only_the_queries_both_have_count():
    a = {"q1": 1.0, "q2": 1.0, "only_a": 100.0}
    b = {"q1": 0.5, "q2": 0.5, "only_b": -100.0}
    got = paired_bootstrap(a, b)
    assert got == Interval(0.5, 0.5, 0.5, 2)
    empty = paired_bootstrap({"x": 1.0}, {"y": 1.0})
    assert empty.queries == 0 and np.isnan(empty.mean)


def test_the_interval_is_the_percentile_interval_of_resampled_means():
    diff = np.array(_noisy(35, 6)) - 0.5
    a = {f"q{i}": float(d) for i, d in enumerate(diff)}
    b = dict.fromkeys(a, 0.0)
    got = paired_bootstrap(a, b, resamples=500, seed=11)
    rng = np.random.default_rng(11)  # sorted query ids, one draw of 500 x 35 indices
    order = np.array([a[q] for q in sorted(a)])
    means = order[rng.integers(0, 35, size=(500, 35))].mean(axis=1)
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))


# -- the sentences -------------------------------------------------------------------------------------

def test_helped_hurt_noise_and_too_small():
    n = MIN_QUERIES + 27
    helped = mining_sentence(Interval(0.021, 0.004, 0.038, n), "mrr@10", "mined negatives (round 3)",
                             "in-batch negatives only (round 1)")
    assert helped == ("On your 57 dev terms, mined negatives (round 3) scored +0.021 MRR@10 over in-batch negatives "
                      "only (round 1), 95% interval [+0.004, +0.038]: mining helped.")
    hurt = mining_sentence(Interval(-0.02, -0.038, -0.004, n), "mrr@10", "mined negatives (round 2)",
                           "in-batch negatives only (round 1)")
    assert hurt.endswith("scored −0.020 MRR@10 over in-batch negatives only (round 1), 95% interval "
                         "[−0.038, −0.004]: mining hurt.")
    noise = mining_sentence(Interval(0.01, -0.01, 0.03, n), "ndcg@10", "A", "B")
    assert "[−0.010, +0.030]: the difference is within noise, so mining's effect is not measurable" in noise
    assert "NDCG@10" in noise and "--dev-fraction" in noise and "helped" not in noise
    small = mining_sentence(Interval(0.2, 0.1, 0.3, MIN_QUERIES - 1), "mrr@10", "A", "B")
    assert f"On your {MIN_QUERIES - 1} dev terms" in small
    assert f"the dev split is too small to tell (under {MIN_QUERIES} terms" in small and "helped" not in small
    assert [verdict(Interval(0, lo, hi, q)) for lo, hi, q in
            [(0.1, 0.2, 30), (-0.2, -0.1, 30), (-0.1, 0.1, 30), (0.1, 0.2, 29), (0.0, 0.0, 30)]] == \
        ["helped", "hurt", "noise", "too small", "noise"]


def _round(number: int, mined: bool, score: float, per_query: dict[str, float] | None) -> Scored:
    return Scored(number, mined, score, per_query)


def test_in_batch_first_compares_the_best_mined_round_with_round_one():
    base = _noisy(40, 8)
    in_batch = _scores([v + 0.1 for v in base])
    mined_up = _scores([v + 0.2 for v in base])  # round 3: +0.1 on every query over round 1
    mined_flat = _scores([v + 0.1 for v in base])
    rounds = [_round(1, False, 0.6, in_batch), _round(2, True, 0.6, mined_flat), _round(3, True, 0.7, mined_up)]
    gain = mining_gain(_round(0, False, 0.5, _scores(base)), rounds, "mrr@10", planned_rounds=3)
    assert (gain["treated_round"], gain["reference_round"], gain["isolates_mining"]) == (3, 1, True)
    assert gain["mean"] == pytest.approx(0.1) and gain["low"] == pytest.approx(0.1) and gain["verdict"] == "helped"
    assert gain["queries"] == 40
    assert gain["sentence"] == ("On your 40 dev terms, mined negatives (round 3) scored +0.100 MRR@10 over in-batch "
                                "negatives only (round 1), 95% interval [+0.100, +0.100]: mining helped.")


def test_round_one_mined_compares_with_the_base_and_says_minings_share_was_not_measured():
    base = _noisy(40, 9)
    rounds = [_round(1, True, 0.55, _scores([v + 0.05 for v in base])),
              _round(2, True, 0.50, _scores([v - 0.05 for v in base]))]
    gain = mining_gain(_round(0, False, 0.5, _scores(base)), rounds, "mrr@10", planned_rounds=2)
    assert (gain["treated_round"], gain["reference_round"], gain["isolates_mining"]) == (1, 0, False)
    sentence = gain["sentence"]
    assert sentence.startswith("On your 40 dev terms, fine-tuning with mined negatives (round 1) scored +0.050 "
                               "MRR@10 over the base model, 95% interval [+0.050, +0.050]: fine-tuning helped;")
    assert "mining's own share was not measured" in sentence and "--first in-batch" in sentence
    assert "mining helped" not in sentence


def test_no_mined_round_says_so():
    scores = _scores(_noisy(40, 10))
    one = mining_gain(_round(0, False, 0.5, scores), [_round(1, False, 0.6, scores)], "mrr@10", planned_rounds=1)
    assert one["sentence"].startswith("Mining's effect was not measured: only round 1 (in-batch negatives only) ran")
    assert "--rounds 1" in one["sentence"] and one["mean"] is None and one["verdict"] is None
    stopped = mining_gain(_round(0, False, 0.5, scores), [_round(1, False, 0.4, scores)], "mrr@10", planned_rounds=3)
    assert "stopped after round 1" in stopped["sentence"] and stopped["treated_round"] is None


def test_a_small_dev_split_is_too_small_to_tell_however_large_the_gain():
    base = _noisy(MIN_QUERIES - 1, 11)
    rounds = [_round(1, False, 0.5, _scores(base)), _round(2, True, 0.9, _scores([v + 0.4 for v in base]))]
    gain = mining_gain(_round(0, False, 0.4, _scores(base)), rounds, "mrr@10", planned_rounds=2)
    assert gain["verdict"] == "too small" and gain["mean"] == pytest.approx(0.4)
    assert "too small to tell" in gain["sentence"] and "helped" not in gain["sentence"]


def test_missing_per_query_scores_are_said_not_guessed():
    gain = mining_gain(_round(0, False, 0.5, None), [_round(1, True, 0.6, None)], "mrr@10", planned_rounds=1)
    assert "not measured" in gain["sentence"] and gain["mean"] is None
