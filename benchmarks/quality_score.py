"""Scoring and summaries for the quality benchmark: one IR evaluator for every recipe, spread over seeds."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from quality_data import Glossary, Term

from pipe_embed.pipeline.core.pairs import doc_id

METRICS = {"mrr@10": "_mrr@10", "ndcg@10": "_ndcg@10", "recall@1": "_recall@1", "recall@10": "_recall@10"}


def score(model: Any, glossary: Glossary, held_out: list[Term]) -> dict[str, float]:
    """Held-out terms as queries against every definition of the glossary (InformationRetrievalEvaluator)."""
    from quality_recipes import MAX_LENGTH
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    model.max_seq_length = MAX_LENGTH
    queries = {f"q{i}": t.term for i, t in enumerate(held_out)}
    relevant = {f"q{i}": {doc_id(d) for d in t.definitions} for i, t in enumerate(held_out)}
    evaluator = InformationRetrievalEvaluator(
        queries, glossary.corpus, relevant, name="heldout", mrr_at_k=[10], ndcg_at_k=[10],
        accuracy_at_k=[1, 10], precision_recall_at_k=[1, 10], map_at_k=[100], batch_size=64,
        show_progress_bar=False, write_csv=False)
    results = evaluator(model)
    out = {}
    for name, suffix in METRICS.items():
        keys = [k for k in results if k.endswith(suffix) and "cosine" in k] or [k for k in results if k.endswith(suffix)]
        out[name] = round(float(results[keys[0]]), 4)
    return out


def summarize(values: list[float]) -> dict[str, Any]:
    """mean, per-seed values, min/max and (sample) std."""
    return {"mean": round(statistics.fmean(values), 4), "per_seed": values, "min": min(values), "max": max(values),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def plot(summary: dict[str, dict[str, Any]], recipes: list[str], path: Path, metric: str = "mrr@10") -> None:
    """Grouped bars (mean per recipe, per glossary) with a dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    glossaries = list(summary)
    width = 0.8 / max(1, len(recipes))
    fig, ax = plt.subplots(figsize=(max(8, 1.8 * len(glossaries) * max(1, len(recipes)) / 3 + 3), 4.5))
    colors = plt.get_cmap("tab10")
    lows = []
    for j, recipe in enumerate(recipes):
        for i, name in enumerate(glossaries):
            entry = summary[name].get(recipe, {}).get(metric)
            if not entry:
                continue
            x = i + (j - (len(recipes) - 1) / 2) * width
            ax.bar(x, entry["mean"], width * 0.9, color=colors(j % 10), label=recipe if i == 0 else None)
            ax.scatter([x] * len(entry["per_seed"]), entry["per_seed"], color="black", s=8, zorder=3)
            lows.append(entry["min"])
    ax.set_xticks(range(len(glossaries)))
    ax.set_xticklabels(glossaries)
    ax.set_ylabel(f"held-out {metric.upper()}")
    if lows:
        ax.set_ylim(max(0.0, min(lows) - 0.08), None)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("term → definition retrieval on held-out terms (bars: mean; dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
