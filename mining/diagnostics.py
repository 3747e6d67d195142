"""Mining diagnostics: where the positive ranks, score histograms, shortfalls, drops, round overlap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipe_embed.mining.candidates import NO_ID, Candidates
from pipe_embed.mining.selection import Selection


def positive_ranks(cands: Candidates, positives: Sequence[Sequence[int]]) -> np.ndarray:
    """1-based rank of each query's best-ranked positive among its candidates; 0 = not retrieved."""
    ranks = np.zeros(len(cands), dtype=np.int64)
    for q, pos in enumerate(positives):
        hits = np.flatnonzero(np.isin(cands.ids[q], np.asarray(pos, dtype=np.int64)) & (cands.ids[q] != NO_ID))
        if len(hits):
            ranks[q] = int(hits[0]) + 1
    return ranks


def rank_summary(ranks: np.ndarray, depth: int) -> dict[str, Any]:
    """Share of queries whose positive ranks 1st, within 10, within 100 (of `depth` retrieved)."""
    n = max(len(ranks), 1)
    found = ranks > 0
    summary: dict[str, Any] = {"depth": int(depth), "at_1": float(np.sum(ranks == 1) / n)}
    for cut in (10, 100):
        summary[f"within_{cut}"] = float(np.sum(found & (ranks <= cut)) / n) if cut <= depth else None
    summary["not_retrieved"] = float(np.sum(~found) / n)
    found_ranks = ranks[found]
    summary["median_rank"] = float(np.median(found_ranks)) if len(found_ranks) else None
    return summary


def score_stats(values: np.ndarray) -> dict[str, float | int | None]:
    """Count, mean and quartiles of a score sample."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"count": 0, "mean": None, "p25": None, "p50": None, "p75": None}
    p25, p50, p75 = np.percentile(values, [25, 50, 75])
    return {"count": int(len(values)), "mean": float(values.mean()), "p25": float(p25),
            "p50": float(p50), "p75": float(p75)}


def plot_histograms(path: Path, positive: np.ndarray, kept: np.ndarray, dropped: np.ndarray,
                    title: str = "mined scores") -> None:
    """PNG histogram of positive, kept-negative and dropped-candidate scores (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    series = [(positive, "positives"), (kept, "kept negatives"), (dropped, "dropped candidates")]
    finite = [s[np.isfinite(s)] for s, _ in series]
    everything = np.concatenate([f for f in finite if len(f)] or [np.zeros(1)])
    bins = np.linspace(float(everything.min()), float(everything.max()) + 1e-6, 41)
    for values, (_, label) in zip(finite, series):
        if len(values):
            ax.hist(values, bins=bins.tolist(), alpha=0.5, label=f"{label} ({len(values)})")
    ax.set_xlabel("score")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def round_overlap(current: dict[str, list[str]], previous: dict[str, list[str]]) -> dict[str, Any]:
    """How many of this round's negatives were already last round's (per anchor id, by negative id)."""
    shared = total = 0
    jaccard = []
    for anchor, negs in current.items():
        if anchor not in previous:
            continue
        now, before = set(negs), set(previous[anchor])
        shared += len(now & before)
        total += len(now)
        union = now | before
        if union:
            jaccard.append(len(now & before) / len(union))
    return {"anchors_compared": len(jaccard), "share_already_negative": shared / total if total else None,
            "mean_jaccard": float(np.mean(jaccard)) if jaccard else None}


def build_report(*, selection: Selection, cands: Candidates, ranks: np.ndarray, positive_scores: np.ndarray,
                 method: str, depth: int, overlap: dict[str, Any] | None = None) -> dict[str, Any]:
    """The diagnostics dict stored in the artifact and summarised in the manifest."""
    kept = cands.scores[selection.chosen]
    dropped = cands.scores[selection.dropped_mask]
    n = max(len(cands), 1)
    report: dict[str, Any] = {
        "method": method,
        "anchors": int(len(cands)),
        "positive_rank": rank_summary(ranks, depth),
        "negatives_per_anchor": float(selection.counts.mean()) if len(cands) else 0.0,
        "short_anchors": selection.short,
        "short_share": selection.short / n,
        "shortfall": selection.shortfall(),
        "dropped": dict(selection.dropped),
        "scores": {"positive": score_stats(positive_scores), "kept": score_stats(kept),
                   "dropped": score_stats(dropped)},
    }
    if overlap is not None:
        report["previous_round_overlap"] = overlap
    return report


def print_table(report: dict[str, Any]) -> None:
    """A short rich table of the diagnostics on stderr."""
    from rich.table import Table

    from pipe_embed.pipeline.core.console import console, quiet

    if quiet():
        return

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = Table(title=f"mine ({report['method']}): {report['anchors']} anchors", show_header=False)
    rank = report["positive_rank"]
    table.add_row("positive ranked 1st / <=10 / <=100",
                  f"{pct(rank['at_1'])} / {pct(rank['within_10'])} / {pct(rank['within_100'])}")
    table.add_row("negatives per anchor", f"{report['negatives_per_anchor']:.2f}")
    table.add_row("anchors short of negatives", f"{report['short_anchors']} ({pct(report['short_share'])})")
    dropped = ", ".join(f"{k} {v}" for k, v in report["dropped"].items() if v) or "none"
    table.add_row("dropped", dropped)
    scores = report["scores"]
    table.add_row("median score: positive / kept / dropped",
                  f"{num(scores['positive']['p50'])} / {num(scores['kept']['p50'])} / {num(scores['dropped']['p50'])}")
    overlap = report.get("previous_round_overlap")
    if overlap:
        table.add_row("already negatives last round", pct(overlap.get("share_already_negative")))
    console.print(table)
