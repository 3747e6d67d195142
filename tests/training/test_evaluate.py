"""Retrieval metrics: hand-checked values, and agreement with sentence-transformers' IR evaluator."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.pairs import anchor_id
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.config import EvalConfig
from pipe_embed.training.evaluate import (
    METRIC_NAMES,
    evaluate_task,
    ranking_metrics,
    read_per_query,
    retrieval_task,
    run_eval,
)


def test_ranking_metrics_by_hand() -> None:
    ranked = [["a", "b", "c"], ["x", "y", "z"], ["p", "q", "r"]]
    relevant = [{"a"}, {"y", "z"}, {"nope"}]
    m = ranking_metrics(ranked, relevant)
    assert m["recall@1"] == pytest.approx((1 + 0 + 0) / 3)
    assert m["recall@5"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    ndcg_second = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((1 + ndcg_second + 0) / 3)


def test_query_metrics_are_the_rows_ranking_metrics_average() -> None:
    from pipe_embed.training.evaluate import mean_metrics, query_metrics

    ranked = [["a", "b", "c"], ["x", "y", "z"], ["p", "q", "r"]]
    relevant = [{"a"}, {"y", "z"}, {"nope"}]
    rows = query_metrics(ranked, relevant)
    assert [r["mrr@10"] for r in rows] == [1.0, 0.5, 0.0]
    assert [r["recall@1"] for r in rows] == [1.0, 0.0, 0.0] and rows[1]["recall@10"] == 1.0
    assert mean_metrics(rows) == ranking_metrics(ranked, relevant)


def test_tasks_forward_and_reverse(compose_artifact) -> None:
    fwd = retrieval_task(compose_artifact.path, "dev")
    assert set(fwd.queries.values()) == {"fork", "epoch"}
    assert len(fwd.corpus) == 17  # 16 definitions + rook's second one
    assert all(len(r) == 1 for r in fwd.relevant.values())
    rev = retrieval_task(compose_artifact.path, "train", reverse=True)
    assert len(rev.corpus) == 16  # every anchor of every split
    rook_docs = [q for q, text in rev.queries.items() if "castle" in text or "ranks and files" in text]
    assert len(rook_docs) == 2 and all(len(rev.relevant[q]) == 1 for q in rook_docs)


@pytest.mark.parametrize("split,reverse", [("train", False), ("dev", False), ("train", True)])
def test_agrees_with_information_retrieval_evaluator(tiny_model_path: Path, compose_artifact,
                                                     split: str, reverse: bool) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    task = retrieval_task(compose_artifact.path, split, reverse=reverse)
    ours = evaluate_task(model, task)
    reference = InformationRetrievalEvaluator(task.queries, task.corpus, task.relevant, name="x",
                                              precision_recall_at_k=[1, 5, 10], write_csv=False)(model)
    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(reference[f"x_cosine_{name}"], abs=1e-9), name
    if split == "train":  # 12+ queries: a random tiny model is neither perfect nor empty
        assert 0 < ours["mrr@10"] < 1


def test_run_eval_writes_an_artifact(store: Store, tiny_model_path: Path, compose_artifact) -> None:
    outcome = run_eval(store, EvalConfig(split="dev", reverse=True, device="cpu"), str(tiny_model_path),
                       compose_artifact.ref)
    art = outcome.artifact
    assert art.stage == "eval" and art.file("metrics.json").is_file()
    assert set(art.metrics["model"]) == {"forward", "reverse"}
    assert [i["stage"] for i in art.inputs] == ["compose"]
    per_query = read_per_query(art)  # the forward direction's queries, whose means are the metrics
    forward = art.metrics["model"]["forward"]
    assert set(per_query) == set(retrieval_task(compose_artifact.path, "dev").relevant) == {anchor_id("fork"), anchor_id("epoch")}
    assert len(per_query) == forward["queries"]
    for name in METRIC_NAMES:
        assert sum(row[name] for row in per_query.values()) / len(per_query) == pytest.approx(forward[name],
                                                                                             abs=1e-12), name
    again = run_eval(store, EvalConfig(split="dev", reverse=True, device="cpu"), str(tiny_model_path),
                     compose_artifact.ref)
    assert again.cached and again.artifact.version == art.version


def test_reverse_direction_swaps_prompt_roles(tiny_model_path: Path, compose_artifact) -> None:
    """Definitions asking for terms are encoded as documents (passage prompt), terms as queries."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    model.prompts.update(query="query: ", document="passage: ")
    task = retrieval_task(compose_artifact.path, "train", reverse=True)
    ours = evaluate_task(model, task)
    swapped = InformationRetrievalEvaluator(task.queries, task.corpus, task.relevant, name="x",
                                            precision_recall_at_k=[1, 5, 10], write_csv=False,
                                            query_prompt="passage: ", corpus_prompt="query: ")(model)
    unswapped = InformationRetrievalEvaluator(task.queries, task.corpus, task.relevant, name="x",
                                              precision_recall_at_k=[1, 5, 10], write_csv=False)(model)
    assert ours["mrr@10"] == pytest.approx(swapped["x_cosine_mrr@10"], abs=1e-9)
    assert ours["mrr@10"] != pytest.approx(unswapped["x_cosine_mrr@10"], abs=1e-9)


def test_a_split_too_small_to_measure_is_called_noise_once(store: Store, tiny_model_path: Path, compose_artifact,
                                                           capsys: pytest.CaptureFixture) -> None:
    from pipe_embed.pipeline.core.console import set_verbosity
    from pipe_embed.training.evaluate import MIN_QUERIES, small_split_warning

    set_verbosity(0)
    run_eval(store, EvalConfig(split="test", reverse=True, device="cpu"), str(tiny_model_path),
             compose_artifact.ref)
    lines = [line for line in capsys.readouterr().err.splitlines() if "split has only" in line]
    assert len(lines) == 1  # one line, not one per direction
    assert "test split has only 2 queries" in lines[0] and "50.0 points" in lines[0]
    assert "noise" in lines[0] and "--test-fraction" in lines[0]
    assert small_split_warning("dev", MIN_QUERIES) is None
    assert "3.4 points" in small_split_warning("dev", MIN_QUERIES - 1)


def test_large_corpora_encode_in_chunks_under_a_progress_bar(tiny_model_path: Path, compose_artifact,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console
    from sentence_transformers import SentenceTransformer

    from pipe_embed.pipeline.core import console as console_mod
    from pipe_embed.pipeline.core.console import set_verbosity
    from pipe_embed.training import evaluate

    set_verbosity(0)
    model = SentenceTransformer(str(tiny_model_path), device="cpu")
    task = retrieval_task(compose_artifact.path, "train")
    whole = evaluate_task(model, task, batch_size=2)
    out = io.StringIO()
    monkeypatch.setattr(console_mod, "console", Console(file=out, force_terminal=True, width=120))
    monkeypatch.setattr(evaluate, "PROGRESS_MIN_TEXTS", 1)
    chunked = evaluate_task(model, task, batch_size=2)
    assert "eval: encoding" in out.getvalue() and "documents" in out.getvalue()
    for name in METRIC_NAMES:
        assert chunked[name] == pytest.approx(whole[name], abs=1e-6), name


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_a_fast_backend_scores_like_torch(backend: str, store: Store, tiny_model_path: Path, chess_html: Path) -> None:
    """eval encodes with the same checked encoder as mine: its metrics agree with torch's to 1e-3."""
    from pipe_embed.pipeline.core import encoders
    from tests.training.chess import chess_compose

    if not encoders.backend_installed(backend):
        pytest.skip(f'{backend} not installed (pip install "pipe-embed[{backend}]")')
    compose = chess_compose(store, chess_html, dev_share=0.3, limit=300)
    runs = {name: run_eval(store, EvalConfig(split="dev", reverse=True, device="cpu", backend=name),
                           str(tiny_model_path), compose.ref, force=True).artifact
            for name in ("torch", backend)}
    assert runs["torch"].stats["encoders"] == {"model": "torch"}
    assert runs[backend].stats["encoders"]["model"].startswith(f"{backend}-")  # e.g. openvino-bf16
    assert runs[backend].version == runs["torch"].version  # the backend is not part of the version
    for direction in ("forward", "reverse"):
        fast, slow = runs[backend].metrics["model"][direction], runs["torch"].metrics["model"][direction]
        assert slow["queries"] >= 50 and 0 < slow["mrr@10"] < 1
        for name in METRIC_NAMES:
            assert fast[name] == pytest.approx(slow[name], abs=1e-3), (direction, name)
