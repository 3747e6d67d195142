"""`pipe report`: an HTML page with PNG plots of an iterate run (metrics, scores, ranks, lineage).

The report is itself an artifact (`data/report/<version>/index.html`), versioned by the iterate
artifact it describes, so it is rebuilt only when the run changes.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.config import option
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.pairs import iter_jsonl, pairs_file
from pipe_embed.pipeline.core.store import Artifact, RunOutcome, StageResult, Store
from pipe_embed.pipeline.orchestrate.iterate import read_rounds

STAGE = "report"
FORMAT_VERSION = 2  # 2: what mining bought, near the top
MAX_BINS = 1000

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2rem auto;
padding:0 1rem;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem} th,td{border:1px solid #d0d7de;padding:.3rem .6rem;
text-align:right} th{background:#f6f8fa} td.l,th.l{text-align:left} tr.best td{background:#dafbe1;font-weight:600}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0} code{background:#f6f8fa;padding:0 .25rem;border-radius:4px}
.muted{color:#57606a;font-size:.9rem} details{margin:.4rem 0} pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.8rem}
.gain{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.6rem .8rem;font-size:1.05rem}
"""


@dataclass
class ReportConfig:
    """What the report shows."""

    metrics: list[str] = option(["mrr@10", "ndcg@10", "recall@1", "recall@10"], "Metrics shown per round.")
    bins: int = option(40, "Bins of the score histograms.")

    def validate(self) -> None:
        """Refuse settings no plot can use, naming the field."""
        if not 1 <= self.bins <= MAX_BINS:
            raise ConfigError(f"field 'bins': {self.bins} is out of range (1 to {MAX_BINS})",
                              hint="a histogram needs at least one bin, e.g. --bins 40")
        if any(not m.strip() for m in self.metrics):
            raise ConfigError("field 'metrics': a metric name is empty", hint="e.g. --metrics mrr@10,recall@1")


def _mine_scores(artifact: Artifact) -> tuple[list[float], list[float]]:
    positives: list[float] = []
    negatives: list[float] = []
    path = artifact.file(pairs_file("train"))
    if not path.is_file():
        return positives, negatives
    for _, row in iter_jsonl(path):
        if row.get("positive_score") is not None:
            positives.append(float(row["positive_score"]))
        negatives.extend(float(s) for s in row.get("negative_scores") or [] if s is not None)
    return positives, negatives


def _plot_metrics(rounds: list[dict[str, Any]], base: dict[str, dict[str, Any]], metrics: list[str],
                  out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if any(m in r["dev"] for r in rounds)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    xs = [r["round"] for r in rounds]
    for ax, split in zip(axes, ("dev", "test")):
        for metric in shown:
            line = ax.plot(xs, [r[split].get(metric) for r in rounds], marker="o", label=metric)[0]
            if metric in base.get(split, {}):
                ax.axhline(base[split][metric], color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_title(f"{split} split (dotted: base model)")
        ax.set_xlabel("round")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score")
    axes[1].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_scores(per_round: list[tuple[int, list[float], list[float]]], bins: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per_round), figsize=(4 * len(per_round) + 1, 3.4), squeeze=False)
    for ax, (number, pos, neg) in zip(axes[0], per_round):
        if pos:
            ax.hist(pos, bins=bins, alpha=0.6, label="positive", color="#2da44e")
        if neg:
            ax.hist(neg, bins=bins, alpha=0.6, label="kept negatives", color="#cf222e")
        ax.set_title(f"round {number}")
        ax.set_xlabel("score")
        if pos or neg:
            ax.legend(fontsize=8)
        else:  # an in-batch round mines nothing
            ax.text(0.5, 0.5, "in-batch negatives only:\nnothing mined", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_ranks(rows: list[tuple[int, dict[str, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(k for _, ranks in rows for k in ranks))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / max(len(rows), 1)
    for i, (number, ranks) in enumerate(rows):
        ax.bar([j + i * width for j in range(len(labels))], [ranks.get(k, 0) for k in labels], width,
               label=f"round {number}")
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(labels))], labels)
    ax.set_ylabel("share of anchors")
    ax.set_ylim(0, 1)
    ax.set_title("where the positive ranked among the miner's candidates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _rank_shares(mine: Artifact) -> dict[str, float]:
    """Shares of anchors whose positive ranked 1st / within 10 / within 100 among the candidates; a
    share the miner left undefined (None: fewer candidates than that) is left out."""
    labels = {"positive_at_1": "1st", "positive_within_10": "<=10", "positive_within_100": "<=100"}
    return {label: float(value) for key, label in labels.items()
            if isinstance(value := mine.metrics.get(key), (int, float)) and not isinstance(value, bool)}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


def render_report(store: Store, iterate: Artifact, config: ReportConfig, work: Path) -> StageResult:
    """Write index.html and its plots for one iterate artifact."""
    data = read_rounds(iterate)
    rounds = data["rounds"]
    metric = data["metric"]
    metrics = [metric] + [m for m in config.metrics if m != metric]
    base = {"dev": data.get("base_dev", {}), "test": data.get("base_test", {})}
    _plot_metrics(rounds, base, metrics, work / "metrics.png")
    per_round, ranks, lineage = [], [], []
    for r in rounds:
        mine = store.resolve(r["mine"])
        store.verify(mine)  # its scores are read: refuse a mine artifact changed after it was written
        pos, neg = _mine_scores(mine)
        per_round.append((r["round"], pos, neg))
        shares = _rank_shares(mine)
        if shares:
            ranks.append((r["round"], shares))
        for ref in (r["mine"], r["train"], r["eval_dev"]):
            art = store.resolve(ref)
            lineage.append((r["round"], art))
    _plot_scores(per_round, config.bins, work / "scores.png")
    if ranks:
        _plot_ranks(ranks, work / "ranks.png")

    head = "".join(f"<th>dev {html.escape(m)}</th>" for m in metrics) + \
        "".join(f"<th>test {html.escape(m)}</th>" for m in metrics[:2])
    base_css = " class=best" if data["best_round"] == 0 else ""
    body = [f"<tr{base_css}><td class=l>base model</td><td class=l>–</td>"
            + "".join(f"<td>{_fmt(data.get('base_dev', {}).get(m, ''))}</td>" for m in metrics)
            + "".join(f"<td>{_fmt(base['test'].get(m, ''))}</td>" for m in metrics[:2])
            + "<td class=l>–</td><td class=l>–</td></tr>"]
    for r in rounds:
        css = " class=best" if r["round"] == data["best_round"] else ""
        body.append(f"<tr{css}><td class=l>round {r['round']}</td><td class=l>{html.escape(r['miner'])}</td>"
                    + "".join(f"<td>{_fmt(r['dev'].get(m, ''))}</td>" for m in metrics)
                    + "".join(f"<td>{_fmt(r['test'].get(m, ''))}</td>" for m in metrics[:2])
                    + f"<td class=l>{_fmt(r.get('overlap_with_previous') if r.get('overlap_with_previous') is not None else '–')}</td>"
                    + f"<td class=l>{'yes' if r['improved'] else 'no'}</td></tr>")
    art_rows = "".join(
        f"<tr><td class=l>{n}</td><td class=l><code>{html.escape(a.ref)}</code></td>"
        f"<td class=l>{html.escape(a.manifest.get('finished', '')[:19])}</td>"
        f"<td class=l><details><summary>config</summary><pre>{html.escape(json.dumps(a.config, indent=1))}</pre>"
        f"</details></td></tr>" for n, a in lineage)
    best = next((r for r in rounds if r["round"] == data["best_round"]),
                {"round": "0 (the base model: no round beat it on dev)", "dev": data.get("base_dev", {}),
                 "model_path": data.get("best_model", "")})
    sentence = (data.get("mining_gain") or {}).get("sentence")
    gain = f"<p class=gain><b>What mining bought:</b> {html.escape(sentence, quote=False)}</p>" if sentence else ""
    refit_note = (f", then refit on train + dev (test {html.escape(metric)} "
                  f"{_fmt((data.get('refit_test') or {}).get(metric, '–'))})" if data.get("refit") else "")
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1"><title>pipe report — {html.escape(iterate.ref)}</title>
<style>{_CSS}</style></head><body>
<h1>pipe iterate report</h1>
<p class=muted><code>{html.escape(iterate.ref)}</code> · {len(rounds)} round(s){' · stopped early' if data.get('stopped_early') else ''} ·
finished {html.escape(iterate.manifest.get('finished', '')[:19])}</p>
{gain}
<p><b>Result:</b> round {best['round']} — dev {html.escape(metric)} {_fmt(best['dev'].get(metric))}
(base model {_fmt(data.get('base_dev', {}).get(metric, ''))}){refit_note}; model at <code>{html.escape(data.get('best_model') or best['model_path'])}</code></p>
<h2>Metrics per round</h2>
<table><tr><th class=l>round</th><th class=l>miner</th>{head}<th class=l>neg. overlap with previous</th><th class=l>improved</th></tr>
{''.join(body)}</table>
<img src="metrics.png" alt="metrics per round">
<h2>Scores of positives and kept negatives</h2>
<p class=muted>Mined with each round's model. Negatives that crowd the positives' scores are the likely false negatives the margin filters remove.</p>
<img src="scores.png" alt="score histograms per round">
{'<h2>Where the positive ranked</h2><img src="ranks.png" alt="positive rank shares">' if ranks else ''}
<h2>Artifacts</h2>
<table><tr><th class=l>round</th><th class=l>artifact</th><th class=l>finished</th><th class=l>config</th></tr>{art_rows}</table>
</body></html>
"""
    (work / "index.html").write_text(page, encoding="utf-8")
    return StageResult(stats={"rounds": len(rounds), "plots": 2 + bool(ranks)},
                       headline={"rounds": len(rounds), "best": best["round"]})


def run_report(store: Store, config: ReportConfig, ref: str = "iterate@latest", force: bool = False) -> RunOutcome:
    """Build (or find) the report of an iterate artifact."""
    iterate = store.resolve(ref, stage="iterate")
    return store.run(stage=STAGE, format_version=FORMAT_VERSION, config=config, inputs=[iterate],
                     force=force, build=lambda work: render_report(store, iterate, config, work))
