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
               metrics: dict[str, Any], data_stats: dict[str, Any], adapter_base: str | None = None) -> str:
    """Markdown (with Hugging Face front matter) naming data, config and metrics.

    `adapter_base`: the directory holds LoRA adapters only (no merge), on top of this base model.
    """
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
    ]
    if adapter_base is not None:
        lines += adapter_section(adapter_base)
    lines += [
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
        if key == "params" and isinstance(config[key], dict):  # the loss's own settings: gist.guide_model …
            for section, values in sorted(config[key].items()):
                lines += [f"| {section}.{name} | {_fmt(value)} |" for name, value in sorted(dict(values).items())]
            continue
        lines.append(f"| {key} | {_fmt(config[key])} |")
    return "\n".join(lines) + "\n"


def adapter_section(base: str) -> list[str]:
    """How to load a directory of LoRA adapters (peft) saved without merging."""
    return [
        "## LoRA adapter",
        "",
        (f"This directory holds LoRA adapters only, trained on top of `{base}` (named in "
         "`adapter_config.json`, which sentence-transformers follows when it loads this path). Onto a copy "
         "of the base you already have:"),
        "",
        "```python",
        f"model = SentenceTransformer({json.dumps(base)})",
        "model.load_adapter(\"path/to/this/directory\")",
        "```",
        "",
        "or with peft: `PeftModel.from_pretrained(AutoModel.from_pretrained(base), \"path/to/this/directory\")`.",
        "",
    ]


def write_model_card(model_dir: Path, **kwargs: Any) -> Path:
    """Write README.md into the model directory (replacing sentence-transformers' own).

    A directory of LoRA adapters (no merge) gets a section on loading them, naming their base model.
    """
    adapter_config = model_dir / "adapter_config.json"
    if "adapter_base" not in kwargs and adapter_config.is_file():
        kwargs["adapter_base"] = json.loads(adapter_config.read_text(encoding="utf-8")).get(
            "base_model_name_or_path") or kwargs.get("base_model", "")
    path = model_dir / "README.md"
    path.write_text(model_card(**kwargs), encoding="utf-8")
    return path
