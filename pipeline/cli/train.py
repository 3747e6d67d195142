"""`pipe train` and `pipe eval`: fine-tune on a mine/compose artifact; score term -> definition retrieval."""

from __future__ import annotations

import inspect
from typing import Any

from pipe_embed.pipeline.cli.app import Shared, open_store, report, stage_command
from pipe_embed.pipeline.cli.inputs import data_ref
from pipe_embed.pipeline.cli.options import config_parameters, option_parameter, overrides
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.training.config import EvalConfig, TrainConfig, load_eval_config, load_train_config


def dtype_alias(prefix: str = "") -> inspect.Parameter:
    """`--dtype`, the old name of `--precision`, hidden from the help so that old command lines still run."""
    return option_parameter(f"{prefix}dtype", str | None, None, "--dtype", hidden=True,
                            help="Old name of --precision: auto, float32, bfloat16, float16.")


def apply_dtype_alias(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The flag values with an old `--dtype` turned into `--precision`."""
    from pipe_embed.training.precision import precision_of_dtype

    old = values.get(f"{prefix}dtype")
    if old is None:
        return values
    if values.get(f"{prefix}precision") is not None:
        raise ConfigError("--dtype is the old name of --precision: give one of them")
    return {**values, f"{prefix}precision": precision_of_dtype(old)}


def train(shared: Shared, values: dict[str, Any]) -> None:
    """Train on a data artifact (or a pairs file, composed first) into a train artifact."""
    from pipe_embed.training.train import run_train

    store = open_store(shared)
    config = load_train_config(shared.config, overrides(TrainConfig, apply_dtype_alias(values)))
    source = data_ref(store, values["from_ref"], shared.config)
    report(run_train(store, config, source, force=shared.force, verbose=shared.verbose))


def evaluate(shared: Shared, values: dict[str, Any]) -> None:
    """Score a model on a held-out split (with --compare, its base model too) into an eval artifact."""
    from pipe_embed.training.evalcheck import check_eval_split
    from pipe_embed.training.evaluate import print_metrics, run_eval

    store = open_store(shared)
    config = load_eval_config(shared.config, overrides(EvalConfig, values))
    data = data_ref(store, values["data"], shared.config)
    check_eval_split(store, config, values["model"], data)  # an empty split fails before any model loads
    outcome = run_eval(store, config, values["model"], data, compare_base=values["compare"], force=shared.force)
    print_metrics(outcome.artifact)
    report(outcome)


stage_command(
    "train", "Fine-tune an embedding model on in-batch plus mined negatives (resumes a killed run).",
    [option_parameter("from_ref", str | None, None, "--from", metavar="REF", shown_default="mine@latest, else compose@latest",
                      help="Data artifact, or a pairs file (CSV/TSV/JSONL/Parquet: composed first)."),
     *config_parameters(TrainConfig), dtype_alias()],
    train, configs={"train": TrainConfig})

stage_command(
    "eval", "Score term -> definition retrieval (recall@k, MRR@10, NDCG@10) on a held-out split.",
    [option_parameter("model", str, "train@latest", "--model", metavar="REF",
                      help="A train artifact (train@latest), its directory, or a model path/id."),
     option_parameter("data", str | None, None, "--data", metavar="REF",
                      help="Data artifact with the split (default: the train artifact's)."),
     option_parameter("compare", bool, False, "--compare", help="Put the base model and the trained one side by side."),
     *config_parameters(EvalConfig)],
    evaluate, configs={"eval": EvalConfig})
