"""`pipe iterate` and `pipe report`: rounds of re-mining with the freshly trained model, and their report."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from pipe_embed.mining.stage import MineConfig
from pipe_embed.pipeline.cli.app import Shared, open_store, report, stage_command
from pipe_embed.pipeline.cli.inputs import data_ref
from pipe_embed.pipeline.cli.options import argument_parameter, config_parameters, option_parameter, overrides
from pipe_embed.pipeline.core.config import load_config
from pipe_embed.pipeline.core.console import console, info
from pipe_embed.pipeline.orchestrate.iterate import IterateConfig, read_rounds, run_iterate
from pipe_embed.pipeline.orchestrate.report import ReportConfig, run_report
from pipe_embed.training.config import EvalConfig, TrainConfig, load_eval_config, load_train_config

MINE_FLAGS = ("num_negatives",)
TRAIN_FLAGS = ("epochs", "batch_size", "max_steps", "report_to", "experiment", "eval_data")


def iterate(shared: Shared, values: dict[str, Any]) -> None:
    """Run the rounds (cache hits for the finished ones) and print the per-round table."""
    store = open_store(shared)
    config = load_config(IterateConfig, "iterate", shared.config, overrides(IterateConfig, values))
    mine_config = load_config(MineConfig, "mine", shared.config, overrides(MineConfig, values, "mine__"))
    train_config = load_train_config(shared.config, overrides(TrainConfig, values, "train__"))
    eval_config = load_eval_config(shared.config, overrides(EvalConfig, values, "eval__"))
    source = data_ref(store, values["from_ref"], shared.config) or "compose@latest"
    outcome = run_iterate(store, config, mine_config, train_config, eval_config, from_ref=source,
                          force=shared.force)
    data = read_rounds(outcome.artifact)
    if not shared.quiet:
        console.print(rounds_table(data))
        metric = data["metric"]
        if data["best_round"] == 0:
            info(f"result: the base model ({metric} {data['base_dev'][metric]:.4f} on dev; no round beat it) — "
                 f"model at {data['best_model']}")
        else:
            best = next(r for r in data["rounds"] if r["round"] == data["best_round"])
            refit = ", refit on train + dev" if data.get("refit") else ""
            info(f"best: round {best['round']} ({metric} {best['dev'][metric]:.4f} on dev){refit} — "
                 f"model at {data['best_model']}")
        gain = data.get("mining_gain") or {}
        if gain.get("sentence"):
            info(escape(gain["sentence"]))  # what mining bought, last: the run's answer in one sentence
    report(outcome)


def rounds_table(data: dict[str, Any]) -> Any:
    """The per-round table printed after `pipe iterate`."""
    from rich.table import Table

    metric = data["metric"]
    table = Table(title="rounds")
    for column in ("round", "miner", f"dev {metric}", f"test {metric}", "test recall@1", "neg overlap", "improved"):
        table.add_column(column, justify="right")
    base, base_test = data.get("base_dev", {}), data.get("base_test", {})
    table.add_row("base", "-", f"{base.get(metric, float('nan')):.4f}", f"{base_test.get(metric, float('nan')):.4f}",
                  f"{base_test.get('recall@1', float('nan')):.4f}", "", "candidate",
                  style="bold green" if data.get("best_round") == 0 else None)
    for r in data["rounds"]:
        overlap = r.get("overlap_with_previous")
        style = "bold green" if r["round"] == data["best_round"] else None
        table.add_row(str(r["round"]), r["miner"], f"{r['dev'].get(metric, float('nan')):.4f}",
                      f"{r['test'].get(metric, float('nan')):.4f}", f"{r['test'].get('recall@1', float('nan')):.4f}",
                      "-" if overlap is None else f"{overlap:.2f}", "yes" if r["improved"] else "no", style=style)
    if data.get("refit"):
        test = data.get("refit_test") or {}
        table.add_row(f"refit {data['best_round']}", "-", "(trained on dev)", f"{test.get(metric, float('nan')):.4f}",
                      f"{test.get('recall@1', float('nan')):.4f}", "", "result", style="bold green")
    return table


def report_cmd(shared: Shared, values: dict[str, Any]) -> None:
    """Write the HTML report of an iterate artifact."""
    config = load_config(ReportConfig, "report", shared.config, overrides(ReportConfig, values))
    outcome = run_report(open_store(shared), config, values["ref"], force=shared.force)
    info(f"report: {outcome.artifact.file('index.html').resolve()}")
    report(outcome)


stage_command(
    "iterate", "Mine → train → eval for N rounds, re-mining with each new model; early stop on dev.",
    [option_parameter("from_ref", str | None, None, "--from", metavar="REF", shown_default="compose@latest",
                      help="Compose artifact (or a mine made from one), or a pairs file (composed first)."),
     *config_parameters(IterateConfig),
     *config_parameters(MineConfig, only=MINE_FLAGS, prefix="mine__", panel="Mining (each round)", sections=False),
     *config_parameters(TrainConfig, only=TRAIN_FLAGS, prefix="train__", panel="Training (each round)",
                        sections=False)],
    iterate, configs={"iterate": IterateConfig})

stage_command(
    "report", "Write an HTML report with plots of an iterate run (default iterate@latest).",
    [argument_parameter("ref", str, "iterate@latest", help="An iterate artifact."),
     *config_parameters(ReportConfig)],
    report_cmd, configs={"report": ReportConfig})
