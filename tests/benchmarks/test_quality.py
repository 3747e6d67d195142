"""The quality benchmark's parts: glossaries from the crawler, splits, scoring, pipe variants, margins."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from quality_data import Glossary, Term, load_glossary, split_terms


def test_slang_glossary_is_parsed_by_the_crawler_and_every_term_is_held_out_once_over_the_folds() -> None:
    glossary = load_glossary("slang")
    assert len(glossary.terms) > 100
    assert len(glossary.corpus) >= len(glossary.terms)
    held_out: list[str] = []
    for fold in range(5):
        train, held = split_terms(glossary, fold, 5)
        assert abs(len(held) - len(glossary.terms) / 5) < 1
        assert {t.term for t in train}.isdisjoint({t.term for t in held})
        assert len(train) + len(held) == len(glossary.terms)
        held_out += [t.term for t in held]
    assert sorted(held_out) == sorted(t.term for t in glossary.terms)
    assert [t.term for t in split_terms(glossary, 0, 5)[1]] == [t.term for t in split_terms(glossary, 0, 5)[1]]


def test_a_subset_pads_its_corpus_with_other_terms_definitions_only() -> None:
    from quality_data import _subset

    terms = [Term(f"t{i}", [f"definition {i}", "shared sense"] if i < 2 else [f"definition {i}"]) for i in range(50)]
    glossary = _subset("toy", terms, 10, "30", "made here")
    own = {d for t in glossary.terms for d in t.definitions}
    assert len(glossary.terms) == 10 and len(glossary.corpus) == 30
    assert glossary.distractors == 30 - len(own)
    assert own <= set(glossary.corpus.values())
    everything = _subset("toy", terms, 10, "all", "made here")
    assert len(everything.corpus) == 51  # 50 own definitions + the shared one, never twice
    assert _subset("toy", terms, 10, "", "made here").distractors == 0


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
    exact, per_query = score(model, glossary, glossary.terms)
    assert exact["mrr@10"] == 1.0 and exact["recall@1"] == 1.0
    assert per_query["mrr@10"] == [1.0] * 4
    # A query whose only relevant definition is another term's text ranks it below the identical text.
    swapped = Glossary("toy", [Term(texts[0], [texts[1]]), Term(texts[1], [texts[0]])] +
                       [Term(t, [t]) for t in texts[2:]])
    means, per_query = score(model, swapped, swapped.terms[:2])
    assert means["recall@1"] == 0.0 and per_query["recall@1"] == [0.0, 0.0]
    assert 0.0 < means["mrr@10"] < 1.0


@pytest.mark.integration
def test_score_equals_sentence_transformers_information_retrieval_evaluator() -> None:
    """On the real model (a random tiny one ties scores, which the two break differently)."""
    from quality_score import score
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from pipe_embed.pipeline.core.models import load_model
    from pipe_embed.pipeline.core.pairs import doc_id

    glossary = load_glossary("slang")
    terms = glossary.terms[:40]
    model = load_model(None, device="cpu")
    mine, _ = score(model, glossary, terms[:15])
    evaluator = InformationRetrievalEvaluator(
        {f"q{i}": t.term for i, t in enumerate(terms[:15])}, glossary.corpus,
        {f"q{i}": {doc_id(d) for d in t.definitions} for i, t in enumerate(terms[:15])}, name="h",
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 10], precision_recall_at_k=[1, 10], map_at_k=[100],
        show_progress_bar=False, write_csv=False)
    theirs = evaluator(model)
    for metric in ("mrr@10", "ndcg@10", "recall@1", "recall@10"):
        assert mine[metric] == pytest.approx(theirs[f"h_cosine_{metric}"], abs=1e-4), metric


def test_paired_interval_covers_queries_and_seeds() -> None:
    from quality_score import paired_interval

    assert paired_interval([[0.0, 0.0]] * 20) == {"mean": 0.0, "low": 0.0, "high": 0.0, "queries": 20,
                                                   "trainer_seeds": 2, "resamples": 2000}
    shifted = paired_interval([[0.1 + 0.01 * (q % 5), 0.12] for q in range(50)])
    assert 0.0 < shifted["low"] <= shifted["mean"] <= shifted["high"]
    noisy = paired_interval([[1.0 if q % 2 else -1.0, 0.0] for q in range(40)])
    assert noisy["low"] < 0.0 < noisy["high"]
    assert paired_interval([[0.3, -0.1]] * 3, seed=1) == paired_interval([[0.3, -0.1]] * 3, seed=1)


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


def test_margins_pair_queries_and_seeds_against_the_best_plain_recipe() -> None:
    from bench_quality import margins

    def rec(recipe: str, fold: int, seed: int, values: list[float]) -> dict:
        return {"recipe": recipe, "fold": fold, "seed": seed, "per_query": {"mrr@10": values}}

    records = [rec("base", f, 0, [0.5, 0.5]) for f in (0, 1)]
    for seed in (42, 43):
        records += [rec("st_inbatch", f, seed, [0.6, 0.8]) for f in (0, 1)]
        records += [rec("st_mined", f, seed, [0.6, 0.6]) for f in (0, 1)]
        records += [rec("pipe_iterate", f, seed, [0.7, 0.9]) for f in (0, 1)]
    records.append(rec("pipe_iterate", 0, 44, [0.0, 0.0]))  # a seed missing a fold is left out
    out = margins(records, ["base", "st_inbatch", "st_mined", "pipe_iterate"], [0, 1])
    assert out["best_plain"] == "st_inbatch"
    vs_plain = out["pipe_iterate"]["vs_best_plain"]
    assert vs_plain["mean"] == pytest.approx(0.1) and vs_plain["low"] == pytest.approx(0.1)
    assert vs_plain["queries"] == 4 and vs_plain["seeds"] == [42, 43]
    assert out["pipe_iterate"]["vs_base"]["mean"] == pytest.approx(0.3)
