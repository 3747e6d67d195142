"""Same-group negatives (`--same-group COLUMN`): candidates only from the anchor's section/page/law."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipe_embed.mining.candidates import NO_ID
from pipe_embed.mining.groups import NO_GROUP, Groups, same_group_candidates, top_columns
from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.pairs import doc_id, read_pairs
from pipe_embed.pipeline.core.store import Artifact, Store
from tests.mining.conftest import GLOSSARY, make_compose, row, split_rows
from tests.mining.test_stage import assert_no_false_negatives

ML = {"gradient descent", "overfitting", "dropout", "learning rate", "epoch", "batch"}
LONER = ("zugzwang", "a position where any move worsens the position of the side to move")


def section(term: str) -> str:
    return "ml" if term in ML else "chess"


def grouped_compose(store: Store) -> Artifact:
    """The mining fixture with a `group` on every row and corpus text; one anchor has no section."""
    splits = split_rows()
    for rows in splits.values():
        for r in rows:
            r["group"] = {"section": section(r["anchor"].lower())}
    loner = row(*LONER[:1], [LONER[1]])
    loner["group"] = {"section": ""}
    splits["train"].append(loner)
    corpus = []
    for rows in splits.values():
        for r in rows:
            for pid, text in zip(r["positive_ids"], r["positives"]):
                if pid not in {c["id"] for c in corpus}:
                    corpus.append({"id": pid, "text": text, "group": dict(r["group"])})
    return make_compose(store, splits, corpus)


def text_sections() -> dict[str, str]:
    out = {}
    for term, definition in GLOSSARY:
        out[doc_id(definition)] = section(term)
    return out


def test_candidates_come_only_from_the_anchors_group():
    groups = Groups("section", ["a", "b"], doc_codes=np.array([0, 1, 0, 1, 0, NO_GROUP]),
                    anchor_codes=np.array([0, 1, NO_GROUP, 0]))
    scores = np.array([[0.1, 0.9, 0.5, 0.2, 0.3, 0.8], [0.4, 0.1, 0.2, 0.3, 0.9, 0.7],
                       [0.5] * 6, [0.3, 0.3, 0.3, 0.3, 0.3, 0.3]], dtype=np.float32)

    def scorer(anchors, docs):
        return scores[np.ix_(anchors, docs)], scores[np.ix_(anchors, docs)]

    cands = same_group_candidates(groups, k=4, scorer=scorer, block=2)  # block 2: several blocks per group
    assert cands.ids[0].tolist() == [2, 4, 0, NO_ID]  # group a = texts 0, 2, 4, best first
    assert cands.ids[1].tolist() == [3, 1, NO_ID, NO_ID]
    assert cands.ids[2].tolist() == [NO_ID] * 4  # no group: no candidates
    assert cands.ids[3].tolist() == [0, 2, 4, NO_ID]  # ties by corpus index
    assert np.allclose(cands.scores[0, :3], [0.5, 0.3, 0.1]) and np.isneginf(cands.scores[2]).all()


def test_top_columns_equals_a_stable_sort_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(200):
        m, d = int(rng.integers(1, 6)), int(rng.integers(1, 60))
        width = min(int(rng.integers(1, 20)), d)
        key = rng.integers(0, 4, (m, d)).astype(np.float32)  # many ties (BM25 zeros)
        assert (top_columns(key, width) == np.argsort(-key, axis=1, kind="stable")[:, :width]).all()


@pytest.mark.parametrize("method", ["bm25", "faiss", "hybrid"])
def test_same_group_negatives_stay_in_the_section_and_keep_the_filters(store: Store, method: str,
                                                                        tiny_model_path: Path, trigram_encoder):
    compose = grouped_compose(store)
    config = MineConfig(method=method, model=str(tiny_model_path), num_negatives=3, range_max=20,
                        same_group="section")
    encoder = trigram_encoder() if method != "bm25" else None
    art = run_mine(store, config, compose, encoder=encoder).artifact
    rows = {r["anchor"]: r for r in read_pairs(art.file("pairs.jsonl"))}
    sections = text_sections()
    for anchor, r in rows.items():
        for nid in r["negative_ids"]:
            assert sections.get(nid, "chess") == section(anchor), (anchor, nid)  # the rook/castle texts are chess
    assert_no_false_negatives(rows)  # never a positive, a duplicate of one, or another definition of the term
    assert rows[LONER[0]]["hard_negatives"] == []  # no section: no same-group negatives, kept and counted
    assert art.stats["same_group"] == {"column": "section", "groups": 2, "anchors_without_group": 1,
                                       "texts_without_group": 1}
    if method == "bm25":  # every text of the section is a candidate, lexical overlap or not
        assert all(len(rows[t]["hard_negatives"]) == 3 for t in ML if t in rows)
    else:  # the dense relative margin still applies within the group
        for r in rows.values():
            assert all(s <= r["positive_score"] * 0.95 + 1e-6 for s in r["negative_scores"])
        assert sum(len(r["hard_negatives"]) for r in rows.values()) > 0


def test_without_same_group_negatives_cross_sections(store: Store, tiny_model_path: Path, trigram_encoder):
    compose = grouped_compose(store)
    config = MineConfig(method="faiss", model=str(tiny_model_path), num_negatives=3, range_max=20)
    art = run_mine(store, config, compose, encoder=trigram_encoder()).artifact
    rows = read_pairs(art.file("pairs.jsonl"))
    sections = text_sections()
    crossing = [r["anchor"] for r in rows for nid in r["negative_ids"]
                if sections.get(nid, "chess") != section(r["anchor"])]
    assert crossing  # the same-group test above can fail: the global BM25 does cross
    assert "same_group" not in art.stats


def test_an_unknown_group_column_is_one_clear_error(store: Store):
    compose = grouped_compose(store)
    with pytest.raises(PipeError, match=r"no anchor or text has a value in column 'law' .*carried by compose: section"):
        run_mine(store, MineConfig(method="bm25", same_group="law"), compose)
    assert store.versions("mine") == []


def test_a_top_level_field_can_be_the_group(store: Store):
    art = run_mine(store, MineConfig(method="bm25", num_negatives=2, range_max=10, same_group="source"),
                   make_compose(store)).artifact
    assert art.stats["same_group"]["groups"] == 1  # every fixture row's source is "test"
    assert art.stats["negatives"] > 0
