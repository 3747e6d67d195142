"""`pipe iterate` and `pipe report`: rounds of re-mining with the freshly trained model, and their report."""

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
from pipe_embed.pipeline.core.config import load_config
from pipe_embed.pipeline.core.console import console, info


@command("iterate", "Mine → train → eval for N rounds, re-mining with each new model; early stop on dev.")
def iterate(
    rounds: Annotated[int | None, typer.Option(help="Maximum number of rounds.")] = None,
    from_ref: Annotated[str, typer.Option("--from", help="Compose artifact (or a mine made from one).")] = "compose@latest",
    first: Annotated[str | None, typer.Option(help="Round 1 miner: faiss | bm25 | hybrid.")] = None,
    model: Annotated[str | None, typer.Option(help="Base model: path or id (default: bundled all-MiniLM-L6-v2).")] = None,
    continue_training: Annotated[bool | None, typer.Option("--continue/--from-base", help="Start each round from the previous round's weights.")] = None,
    negatives: Annotated[str | None, typer.Option(help="Across rounds: replace | union.")] = None,
    metric: Annotated[str | None, typer.Option(help="Dev metric for early stopping and the best round.")] = None,
    min_delta: Annotated[float | None, typer.Option(help="Required dev improvement per round.")] = None,
    num_negatives: Annotated[int | None, typer.Option(help="Mined negatives per anchor (mine).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs per round (train).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size (train).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Training steps per round, 0 = epochs decide (train).")] = None,
    data_dir: DataDir = Path("data"),
    config: ConfigFile = None,
    force: Force = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    from pipe_embed.mining.stage import MineConfig
    from pipe_embed.pipeline.iterate import IterateConfig, read_rounds, run_iterate
    from pipe_embed.training.config import load_eval_config, load_train_config

    store = setup(data_dir, verbose, quiet)
    cfg = load_config(IterateConfig, "iterate", config, {
        "rounds": rounds, "first": first, "model": model, "continue_training": continue_training,
        "negatives": negatives, "metric": metric, "min_delta": min_delta})
    mine_cfg = load_config(MineConfig, "mine", config, {"num_negatives": num_negatives})
    train_cfg = load_train_config(config, {"epochs": epochs, "batch_size": batch_size, "max_steps": max_steps})
    eval_cfg = load_eval_config(config, {})
    outcome = run_iterate(store, cfg, mine_cfg, train_cfg, eval_cfg, from_ref=from_ref, force=force)
    data = read_rounds(outcome.artifact)
    if not quiet:
        console.print(rounds_table(data))
        best = next(r for r in data["rounds"] if r["round"] == data["best_round"])
        info(f"best: round {best['round']} ({data['metric']} {best['dev'][data['metric']]:.4f} on dev) — "
             f"model at {best['model_path']}")
    report(outcome)


def rounds_table(data: dict):
    """The per-round table printed after `pipe iterate`."""
    from rich.table import Table

    metric = data["metric"]
    table = Table(title="rounds")
    for column in ("round", "miner", f"dev {metric}", f"test {metric}", "test recall@1", "neg overlap", "improved"):
        table.add_column(column, justify="right")
    base, base_test = data.get("base_dev", {}), data.get("base_test", {})
    table.add_row("base", "-", f"{base.get(metric, float('nan')):.4f}", f"{base_test.get(metric, float('nan')):.4f}",
                  f"{base_test.get('recall@1', float('nan')):.4f}", "", "")
    for r in data["rounds"]:
        overlap = r.get("overlap_with_previous")
        style = "bold green" if r["round"] == data["best_round"] else None
        table.add_row(str(r["round"]), r["miner"], f"{r['dev'].get(metric, float('nan')):.4f}",
                      f"{r['test'].get(metric, float('nan')):.4f}", f"{r['test'].get('recall@1', float('nan')):.4f}",
                      "-" if overlap is None else f"{overlap:.2f}", "yes" if r["improved"] else "no", style=style)
    return table


@command("report", "Write an HTML report with plots of an iterate run (default iterate@latest).")
def report_cmd(
    ref: Annotated[str, typer.Argument(help="An iterate artifact.")] = "iterate@latest",
    data_dir: DataDir = Path("data"),
    config: ConfigFile = None,
    force: Force = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    from pipe_embed.pipeline.report import ReportConfig, run_report

    store = setup(data_dir, verbose, quiet)
    cfg = load_config(ReportConfig, "report", config, {})
    outcome = run_report(store, cfg, ref, force=force)
    info(f"report: {outcome.artifact.file('index.html')}")
    report(outcome)
