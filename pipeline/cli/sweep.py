"""`pipe sweep`: an Optuna search over lr / batch size / temperature / epochs, each trial a train artifact."""

from __future__ import annotations

from typing import Any

from pipe_embed.pipeline.cli.app import Shared, open_store, report, stage_command
from pipe_embed.pipeline.cli.inputs import data_ref
from pipe_embed.pipeline.cli.options import config_parameters, option_parameter, overrides
from pipe_embed.pipeline.cli.train import apply_dtype_alias, dtype_alias
from pipe_embed.pipeline.core.config import load_config
from pipe_embed.pipeline.core.console import console, info
from pipe_embed.pipeline.orchestrate.sweep import (
    BEST_CONFIG,
    SEARCHED,
    SweepConfig,
    read_trials,
    run_sweep,
    trials_table,
)
from pipe_embed.training.config import TrainConfig, load_train_config


def sweep(shared: Shared, values: dict[str, Any]) -> None:
    """Run the trials (cache hits for those trained before), print the table and where the best config is."""
    store = open_store(shared)
    config = load_config(SweepConfig, "sweep", shared.config, overrides(SweepConfig, values))
    train_config = load_train_config(shared.config, overrides(TrainConfig, apply_dtype_alias(values, "train__"),
                                                              "train__"))
    source = data_ref(store, values["from_ref"], shared.config)
    outcome = run_sweep(store, config, train_config, source, force=shared.force, verbose=shared.verbose)
    art = outcome.artifact
    if not shared.quiet:
        console.print(trials_table(read_trials(art), art.metrics["metric"], art.metrics["best_trial"]))
        data = next((f"{i['stage']}@{i['version']}" for i in art.inputs), "REF")
        best = art.file(BEST_CONFIG).resolve()
        info(f"best: trial {art.metrics['best_trial']} ({art.metrics['metric']} {art.metrics['best_value']:.4f}, "
             f"{art.metrics['best_train']}); config {best} — `pipe train --config {best} --from {data}`; "
             f"plot {art.file('trials.png').resolve()}")
    report(outcome)


stage_command(
    "sweep", "Search lr / batch size / temperature / epochs with Optuna on the dev metric (each trial a train "
             "artifact; early pruning); writes the trials, a plot and the best config.",
    [option_parameter("from_ref", str | None, None, "--from", metavar="REF",
                      shown_default="mine@latest, else compose@latest",
                      help="Data artifact, or a pairs file (CSV/TSV/JSONL/Parquet: composed first)."),
     *config_parameters(SweepConfig),
     *config_parameters(TrainConfig, skip=SEARCHED, prefix="train__", panel="Training (each trial)"),
     dtype_alias("train__")],
    sweep, configs={"sweep": SweepConfig})
