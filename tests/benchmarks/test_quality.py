"""The quality benchmark's parts: glossaries from the crawler, splits, scoring, pipe variants, margins."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from quality_data import Glossary, Term, load_glossary, split_terms


def test_slang_glossary_is_parsed_by_the_crawler_and_split_by_seed() -> None:
    glossary = load_glossary("slang")
    assert len(glossary.terms) > 100
    assert len(glossary.corpus) >= len(glossary.terms)
    train, held = split_terms(glossary, 0)
    assert len(held) == round(0.2 * len(glossary.terms))
    assert {t.term for t in train}.isdisjoint({t.term for t in held})
    assert len(train) + len(held) == len(glossary.terms)
    assert [t.term for t in split_terms(glossary, 0)[1]] == [t.term for t in held]
    assert [t.term for t in split_terms(glossary, 1)[1]] != [t.term for t in held]


def test_unknown_glossary_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown glossary"):
        load_glossary("nope")


def test_score_counts_a_query_whose_text_is_its_definition_as_found(tiny_model_path: Path) -> None:
    from quality_score import score

    from pipe_embed.pipeline.core.models import load_model

    texts = ["rook a chess piece that moves along ranks and files",
             "bishop a piece that moves diagonally across the board",
             "castling a move of the king and a rook together",
             "overfitting when a model learns noise in the training data"]
    glossary = Glossary("toy", [Term(t, [t]) for t in texts])
    model = load_model(str(tiny_model_path), device="cpu")
    exact = score(model, glossary, glossary.terms)
    assert exact["mrr@10"] == 1.0 and exact["recall@1"] == 1.0
    # A query whose only relevant definition is another term's text ranks it below the identical text.
    swapped = Glossary("toy", [Term(texts[0], [texts[1]]), Term(texts[1], [texts[0]])] +
                       [Term(t, [t]) for t in texts[2:]])
    assert score(model, swapped, swapped.terms[:2])["recall@1"] == 0.0


def test_pipe_variant_applies_overrides_and_refuses_unknown_tables(tmp_path: Path) -> None:
    from quality_recipes import MAX_LENGTH, PipeVariant

    good = tmp_path / "v.toml"
    good.write_text("[train]\nepochs = 3\n[compose]\ntest_fraction = 0.0\n[bench]\nmin_steps = 40\n")
    variant = PipeVariant.parse(f"fast={good}")
    configs = variant.configs()
    assert variant.name == "fast" and variant.bench("min_steps") == 40
    assert configs["train"].epochs == 3 and configs["train"].max_length == MAX_LENGTH
    assert configs["compose"].test_fraction == 0.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[trian]\nepochs = 3\n")
    with pytest.raises(SystemExit, match="unknown table"):
        PipeVariant.parse(str(bad))


def test_margins_compare_per_seed_against_the_best_plain_recipe() -> None:
    from bench_quality import margins

    def rec(recipe: str, seed: int, mrr: float) -> dict:
        return {"recipe": recipe, "seed": seed, "metrics": {"mrr@10": mrr}}

    records = [rec("base", 0, 0.5), rec("base", 1, 0.6), rec("st_inbatch", 0, 0.6), rec("st_inbatch", 1, 0.7),
               rec("st_mined", 0, 0.55), rec("st_mined", 1, 0.65), rec("pipe_iterate", 0, 0.62),
               rec("pipe_iterate", 1, 0.69)]
    out = margins(records, ["base", "st_inbatch", "st_mined", "pipe_iterate"])
    assert out["best_plain"] == "st_inbatch"
    assert out["pipe_iterate"]["vs_best_plain"]["per_seed"] == [0.02, -0.01]
    assert out["pipe_iterate"]["vs_base"]["min"] == 0.09

