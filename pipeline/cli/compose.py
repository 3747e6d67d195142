"""`pipe compose`: glossary tables or a crawl artifact in, split training pairs out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipe_embed.pipeline.cli.app import Shared, open_store, report, stage_command
from pipe_embed.pipeline.cli.options import config_parameters, option_parameter, overrides
from pipe_embed.pipeline.compose.stage import ComposeConfig, run_compose
from pipe_embed.pipeline.core.config import load_config


def compose(shared: Shared, values: dict[str, Any]) -> None:
    """Compose input files or a crawl artifact into pairs.jsonl (+ dev/test) and corpus.jsonl."""
    config = load_config(ComposeConfig, "compose", shared.config, overrides(ComposeConfig, values))
    from pipe_embed.mining.bm25 import bm25_negatives_for_pairs  # --hard-k: BM25 negatives at compose time

    report(run_compose(open_store(shared), config, inputs=values["input"], from_ref=values["from_ref"],
                       force=shared.force, negatives=bm25_negatives_for_pairs))


stage_command(
    "compose", "Clean glossary rows into split anchor/positive pairs (CSV, TSV, JSONL, Parquet, or a crawl).",
    [option_parameter("input", list[Path] | None, None, "--input", "-i", metavar="FILE",
                      help="Input table (CSV, TSV, JSONL, Parquet); repeat for several."),
     option_parameter("from_ref", str | None, None, "--from", metavar="REF", help="A crawl artifact, e.g. crawl@latest."),
     *config_parameters(ComposeConfig)],
    compose, configs={"compose": ComposeConfig})
