"""Scoring and summaries for the quality benchmark: one retrieval scorer for every recipe, paired intervals."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from quality_data import Glossary, Term

from pipe_embed.pipeline.core.pairs import doc_id

METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@10")
TOP_K = 10


def score(model: Any, glossary: Glossary, held_out: list[Term]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Held-out terms as queries against every definition of the glossary: the metrics (means) and each
    query's own values, in held-out order (for paired intervals). Same definitions as sentence-transformers'
    InformationRetrievalEvaluator: cosine, top 10, recall = share of the term's definitions found."""
    import numpy as np
    from quality_recipes import MAX_LENGTH

    model.max_seq_length = MAX_LENGTH
    ids = list(glossary.corpus)
    docs = model.encode([glossary.corpus[i] for i in ids], batch_size=64, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False)
    queries = model.encode([t.term for t in held_out], batch_size=64, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    position = {key: n for n, key in enumerate(ids)}
    per_query: dict[str, list[float]] = {name: [] for name in METRICS}
    for start in range(0, len(held_out), 256):
        sims = queries[start:start + 256] @ docs.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :TOP_K]
        for row, term in zip(top, held_out[start:start + 256]):
            relevant = {position[doc_id(d)] for d in term.definitions}
            hits = [int(i) in relevant for i in row]
            first = next((n for n, hit in enumerate(hits) if hit), None)
            per_query["mrr@10"].append(0.0 if first is None else 1.0 / (first + 1))
            dcg = sum(1.0 / math.log2(n + 2) for n, hit in enumerate(hits) if hit)
            ideal = sum(1.0 / math.log2(n + 2) for n in range(min(len(relevant), TOP_K)))
            per_query["ndcg@10"].append(dcg / ideal)
            per_query["recall@1"].append(sum(hits[:1]) / len(relevant))
            per_query["recall@10"].append(sum(hits) / len(relevant))
    means = {name: round(float(statistics.fmean(values)), 4) for name, values in per_query.items()}
    return means, {name: [round(v, 5) for v in values] for name, values in per_query.items()}


def paired_interval(diffs: list[list[float]], resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean paired difference and its 95% bootstrap interval; `diffs[q][s]` is query q's difference on
    trainer seed s. Queries and seeds are resampled together, so both sources of noise are in the interval."""
    import numpy as np

    table = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    q, s = table.shape
    means = np.empty(resamples)
    for n in range(resamples):
        rows = rng.integers(0, q, q)
        cols = rng.integers(0, s, s)
        means[n] = table[np.ix_(rows, cols)].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": round(float(table.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "queries": q, "trainer_seeds": s, "resamples": resamples}


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
