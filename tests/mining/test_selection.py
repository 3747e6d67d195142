"""Selection as pure functions: exclusion, rank window, each score filter, sampling, shortfalls."""

from __future__ import annotations

import numpy as np
import pytest

from pipe_embed.mining.candidates import Candidates
from pipe_embed.mining.selection import (
    DUPLICATE,
    KEEP,
    OTHER_DEFINITION,
    POSITIVE,
    Exclusions,
    SelectionParams,
    apply_drops,
    exclusion_codes,
    margin_drops,
    max_score_drops,
    min_score_drops,
    rank_window,
    refine,
    relative_margin_drops,
    sample,
    select_negatives,
)


def cands(ids, scores) -> Candidates:
    return Candidates(np.array(ids), np.array(scores, dtype=np.float32))


def test_exclusion_codes_name_each_reason_per_query():
    ids = np.array([[5, 1, 7, 2, -1], [5, 1, 7, 2, 3]])
    excl = Exclusions.from_sets(positive=[[1], [3]], duplicate=[[7, 1], []], other=[[2], [5]])
    codes = exclusion_codes(ids, excl)
    assert codes[0].tolist() == [KEEP, POSITIVE, DUPLICATE, OTHER_DEFINITION, KEEP]
    assert codes[1].tolist() == [OTHER_DEFINITION, KEEP, KEEP, KEEP, POSITIVE]
    assert excl.max_count() == 3  # 1 counted once although listed twice


def test_rank_window_counts_ranks_among_allowed_candidates_only():
    allowed = np.array([[False, True, True, False, True, True]])
    window = rank_window(allowed, range_min=1, range_max=3)
    assert window[0].tolist() == [False, False, True, False, True, False]


def test_max_and_min_score():
    scores = np.array([[0.9, 0.5, 0.1]], dtype=np.float32)
    assert max_score_drops(scores, 0.8)[0].tolist() == [True, False, False]
    assert min_score_drops(scores, 0.2)[0].tolist() == [False, False, True]
    assert not max_score_drops(scores, None).any() and not min_score_drops(scores, None).any()


def test_absolute_margin_drops_when_negative_plus_margin_exceeds_positive():
    scores = np.array([[0.75, 0.69, 0.5]], dtype=np.float32)
    drops = margin_drops(scores, np.array([0.8], dtype=np.float32), 0.1)
    assert drops[0].tolist() == [True, False, False]


def test_relative_margin_is_one_minus_m_times_positive():
    scores = np.array([[0.96, 0.94, 0.5], [-0.5, -0.52, -0.6]], dtype=np.float32)
    drops = relative_margin_drops(scores, np.array([1.0, -0.5], dtype=np.float32), 0.05)
    assert drops[0].tolist() == [True, False, False]  # threshold 0.95
    # a negative positive score: the threshold stays below it (-0.525), not above
    assert drops[1].tolist() == [True, True, False]


def test_apply_drops_counts_each_candidate_under_the_first_filter_only():
    eligible = np.array([[True, True, True, False]])
    first = np.array([[True, False, False, True]])
    second = np.array([[True, True, False, False]])
    survivors, counts, dropped = apply_drops(eligible, {"a": first, "b": second})
    assert counts == {"a": 1, "b": 1}
    assert survivors[0].tolist() == [False, False, True, False]
    assert dropped[0].tolist() == [True, True, False, False]


def test_top_sampling_takes_the_best_ranked_survivors():
    survivors = np.array([[False, True, True, True, True]])
    assert sample(survivors, 2, "top")[0].tolist() == [False, True, True, False, False]


def test_random_sampling_is_seeded_and_draws_only_survivors():
    survivors = np.tile(np.array([True, False, True, True, True, False, True]), (50, 1))
    a = sample(survivors, 3, "random", seed=7)
    b = sample(survivors, 3, "random", seed=7)
    c = sample(survivors, 3, "random", seed=8)
    assert (a == b).all() and not (a == c).all()
    assert (a.sum(axis=1) == 3).all() and not (a & ~survivors).any()
    assert len({tuple(r) for r in a}) > 1  # not the same draw for every row


def test_select_negatives_end_to_end_keeps_short_anchors_without_padding():
    c = cands([[1, 2, 3, 4, 5], [6, 7, -1, -1, -1]],
              [[0.99, 0.9, 0.8, 0.7, 0.6], [0.5, 0.4, 0, 0, 0]])
    excl = Exclusions.from_sets(positive=[[1], [9]])
    params = SelectionParams(num_negatives=3, range_max=10, relative_margin=0.05)
    sel = select_negatives(c, excl, np.array([0.9, 0.9], dtype=np.float32), params)
    chosen = sel.rows(c)
    assert chosen[0][0].tolist() == [3, 4, 5]  # 1 is the positive, 2 scores above 0.855
    assert chosen[1][0].tolist() == [6, 7]  # only two candidates exist: short, not padded
    assert sel.short == 1 and sel.shortfall() == {"2": 1}
    assert sel.dropped["positive"] == 1 and sel.dropped["relative_margin"] == 1


def test_refine_applies_an_extra_filter_to_survivors_and_resamples():
    c = cands([[1, 2, 3, 4]], [[0.5, 0.4, 0.3, 0.2]])
    params = SelectionParams(num_negatives=2, range_max=10)
    sel = select_negatives(c, Exclusions.from_sets([[]]), np.array([1.0], dtype=np.float32), params)
    assert sel.rows(c)[0][0].tolist() == [1, 2]
    veto = np.array([[True, False, False, False]])
    again = refine(sel, "cross_encoder", veto, params)
    assert again.rows(c)[0][0].tolist() == [2, 3] and again.dropped["cross_encoder"] == 1


@pytest.mark.parametrize("sampling", ["top", "random"])
def test_range_min_skips_the_best_allowed_candidates(sampling: str):
    c = cands([[1, 2, 3, 4, 5, 6]], [[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    params = SelectionParams(num_negatives=2, range_min=2, range_max=4, sampling=sampling)
    sel = select_negatives(c, Exclusions.from_sets([[1]]), np.array([1.0], dtype=np.float32), params)
    assert sorted(sel.rows(c)[0][0].tolist()) == [4, 5]
