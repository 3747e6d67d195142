"""`pipe compose`: glossary tables or a crawl artifact in, split training pairs out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pipe_embed.pipeline.cli.app import (
    ConfigFile,
    DataDir,
    Force,
    Quiet,
    Verbose,
    command,
    report,
    setup,
)
from pipe_embed.pipeline.compose.stage import ComposeConfig, run_compose
from pipe_embed.pipeline.core.config import load_config


@command("compose", "Clean glossary rows into split anchor/positive pairs (CSV, TSV, JSONL, Parquet, or a crawl).")
def compose(
    input: Annotated[list[Path] | None, typer.Option("--input", "-i", help="Input file; repeat for several.")] = None,
    from_ref: Annotated[str | None, typer.Option("--from", help="A crawl artifact, e.g. crawl@latest.")] = None,
    anchor_col: Annotated[str | None, typer.Option(help="Column holding the anchor.")] = None,
    positive_col: Annotated[str | None, typer.Option(help="Column holding the positive.")] = None,
    min_positive_chars: Annotated[int | None, typer.Option(help="Drop shorter positives.")] = None,
    max_positive_chars: Annotated[int | None, typer.Option(help="Drop longer positives.")] = None,
    dev_fraction: Annotated[float | None, typer.Option(help="Share of anchors in dev.")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="Share of anchors in test.")] = None,
    seed: Annotated[int | None, typer.Option(help="Split seed.")] = None,
    hard_k: Annotated[int | None, typer.Option("--hard-k", help="BM25 hard negatives per anchor.")] = None,
    data_dir: DataDir = Path("data"),
    config: ConfigFile = None,
    force: Force = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    store = setup(data_dir, verbose, quiet)
    cfg = load_config(ComposeConfig, "compose", config, {
        "anchor_col": anchor_col, "positive_col": positive_col,
        "min_positive_chars": min_positive_chars, "max_positive_chars": max_positive_chars,
        "dev_fraction": dev_fraction, "test_fraction": test_fraction, "seed": seed, "hard_k": hard_k,
    })
    report(run_compose(store, cfg, inputs=input, from_ref=from_ref, force=force))
