"""Pairs rows -> training columns: a variable number of mined negatives, several positives per anchor."""

from __future__ import annotations

from pipe_embed.pipeline.core.pairs import normalize_key
from pipe_embed.training.data import build_rows, negative_columns, to_dataset


def row(anchor: str, positives: list[str], negatives: list[str]) -> dict:
    return {"anchor": anchor, "positive": positives[0], "positives": positives, "hard_negatives": negatives}


ROWS = [
    row("rook", ["moves along files", "the castle piece"], ["moves diagonally", "jumps in an L"]),
    row("bishop", ["moves diagonally"], ["moves along files", "jumps in an L", "moves one square", "extra"]),
    row("knight", ["jumps in an L"], []),
    row("pawn", ["moves one square"], ["Moves One Square", "moves diagonally"]),  # a negative equal to the positive
    row("king", ["the piece to protect"], ["moves one square"]),
]


def test_every_anchor_trains_with_k_negatives_and_fillers_are_never_its_positives() -> None:
    rows = build_rows(ROWS, max_negatives=3, seed=1)
    cols = rows.columns
    assert list(cols) == ["anchor", "positive", *negative_columns(3)]
    assert len({len(v) for v in cols.values()}) == 1
    assert sorted(set(cols["anchor"])) == sorted(r["anchor"] for r in ROWS)
    positives = {r["anchor"]: {normalize_key(p) for p in r["positives"]} for r in ROWS}
    for i, anchor in enumerate(cols["anchor"]):
        negs = [cols[c][i] for c in negative_columns(3)]
        assert len({normalize_key(n) for n in negs}) == 3, negs
        assert not {normalize_key(n) for n in negs} & positives[anchor]
    # mined negatives keep their order and come first
    bishop = cols["anchor"].index("bishop")
    assert [cols[c][bishop] for c in negative_columns(3)] == ["moves along files", "jumps in an L", "moves one square"]
    stats = rows.stats
    assert stats["anchors"] == 5 and stats["rows"] == 6  # rook has two positives -> two rows
    assert stats["anchors_padded"] == 4  # rook (2), knight (0), pawn (1 after cleaning), king (1)
    assert stats["negatives_padded"] == 1 + 3 + 2 + 2
    assert stats["anchors_truncated"] == 1 and stats["anchors_multi_positive"] == 1
    assert stats["anchors_without_mined"] == 1


def test_one_row_per_positive_and_drop_mode() -> None:
    rows = build_rows(ROWS, max_negatives=2, pad="drop")
    assert rows.stats["anchors_dropped_short"] == 3  # knight, pawn, king
    assert rows.columns["anchor"] == ["rook", "rook", "bishop"]
    assert rows.columns["positive"][:2] == ["moves along files", "the castle piece"]


def test_default_k_is_the_most_any_anchor_has_and_padding_is_seeded() -> None:
    assert build_rows(ROWS).num_negatives == 4
    assert build_rows(ROWS, seed=3).columns == build_rows(ROWS, seed=3).columns
    assert build_rows([row("a", ["x"], []), row("b", ["y"], [])]).num_negatives == 0


def test_dataset_columns_in_loss_order() -> None:
    ds = to_dataset(build_rows(ROWS, max_negatives=1))
    assert ds.column_names == ["anchor", "positive", "negative_1"]
    assert len(ds) == 6
