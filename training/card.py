"""The model card written next to a trained model: what data, which config, what it scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def model_card(*, base_model: str, data_ref: str | None, config: dict[str, Any],
               metrics: dict[str, Any], data_stats: dict[str, Any]) -> str:
    """Markdown (with Hugging Face front matter) naming data, config and metrics."""
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, feature-extraction, sentence-similarity, pipe]",
        f"base_model: {json.dumps(base_model)}",
        "---",
        "",
        f"# Fine-tuned from `{base_model}`",
        "",
        "Trained by `pipe train` (term -> definition retrieval). Load it with nothing but "
        "sentence-transformers:",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "model = SentenceTransformer(\"path/to/this/directory\")",
        "```",
        "",
        "## Data",
        "",
        f"- training data: `{data_ref or config.get('pairs_path')}`",
    ]
    for key in ("anchors", "rows", "negatives_per_row", "anchors_padded", "negatives_padded",
                "anchors_dropped_short", "anchors_multi_positive"):
        if key in data_stats:
            lines.append(f"- {key.replace('_', ' ')}: {data_stats[key]}")
    lines += ["", "## Metrics", ""]
    dev, base = metrics.get("dev"), metrics.get("dev_base")
    if dev:
        header = "| metric | base | trained |" if base else "| metric | trained |"
        lines += [header, "|---|---|---|" if base else "|---|---|"]
        for name in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"):
            if name in dev:
                row = f"| {name} | {_fmt(base[name])} | {_fmt(dev[name])} |" if base else f"| {name} | {_fmt(dev[name])} |"
                lines.append(row)
        lines.append("")
        lines.append("Dev split, retrieval over the whole corpus.")
    else:
        lines.append("No dev split was available; no retrieval metrics.")
    train = metrics.get("train", {})
    if train:
        lines += ["", "Training: " + ", ".join(f"{k} {_fmt(v)}" for k, v in train.items())]
    lines += ["", "## Config", "", "| field | value |", "|---|---|"]
    for key in sorted(config):
        lines.append(f"| {key} | {_fmt(config[key])} |")
    return "\n".join(lines) + "\n"


def write_model_card(model_dir: Path, **kwargs: Any) -> Path:
    """Write README.md into the model directory (replacing sentence-transformers' own)."""
    path = model_dir / "README.md"
    path.write_text(model_card(**kwargs), encoding="utf-8")
    return path
