"""`pipe train` and `pipe eval`: fine-tune on a mine/compose artifact; score term -> definition retrieval."""

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


@command("train", "Fine-tune an embedding model on in-batch plus mined negatives (resumes a killed run).")
def train(
    from_ref: Annotated[str | None, typer.Option("--from", help="Data artifact (default mine@latest, else compose@latest).")] = None,
    model: Annotated[str | None, typer.Option(help="Base model: hub id, local dir, or a train artifact's model dir.")] = None,
    loss: Annotated[str | None, typer.Option(help="mnrl | cached-mnrl | gist.")] = None,
    guide_model: Annotated[str | None, typer.Option(help="gist: guide model (default: the base model).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Softmax temperature (scale = 1/temperature).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the data.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Rows per batch.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (0 = epochs decide).")] = None,
    eval_steps: Annotated[int | None, typer.Option(help="Dev evaluation every N steps (0 = epoch end only).")] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping patience in evaluations (0 = off).")] = None,
    max_negatives: Annotated[int | None, typer.Option(help="Mined negatives per row (0 = as many as mined).")] = None,
    pad_negatives: Annotated[str | None, typer.Option(help="Anchors short of negatives: random | drop.")] = None,
    query_prompt: Annotated[str | None, typer.Option(help="Instruction prefix for queries.")] = None,
    passage_prompt: Annotated[str | None, typer.Option(help="Instruction prefix for passages.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Token limit for all texts.")] = None,
    query_max_length: Annotated[int | None, typer.Option(help="Token limit for queries.")] = None,
    passage_max_length: Annotated[int | None, typer.Option(help="Token limit for passages.")] = None,
    pooling: Annotated[str | None, typer.Option(help="model | mean | cls | lasttoken | max.")] = None,
    lora: Annotated[bool | None, typer.Option("--lora/--no-lora", help="Train LoRA adapters (peft).")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha.")] = None,
    lora_dropout: Annotated[float | None, typer.Option(help="LoRA dropout.")] = None,
    lora_merge: Annotated[bool | None, typer.Option("--lora-merge/--no-lora-merge", help="Write a merged full model.")] = None,
    qlora: Annotated[bool | None, typer.Option("--qlora/--no-qlora", help="4-bit QLoRA (CUDA + bitsandbytes).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N | mps.")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | float16 | bfloat16.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    trust_remote_code: Annotated[bool | None, typer.Option("--trust-remote-code/--no-trust-remote-code", help="Run code shipped with the model.")] = None,
    export_dir: Annotated[str | None, typer.Option(help="Also copy the trained model here.")] = None,
    data_dir: DataDir = Path("data"),
    config: Annotated[Path | None, typer.Option("--config", help="Config file (TOML/YAML/JSON, or the seed trainers' config.json).")] = None,
    force: Force = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    from pipe_embed.training.config import load_train_config
    from pipe_embed.training.train import run_train

    store = setup(data_dir, verbose, quiet)
    cfg = load_train_config(config, {
        "model": model, "loss": loss, "guide_model": guide_model, "temperature": temperature, "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "max_steps": max_steps, "eval_steps": eval_steps,
        "patience": patience, "max_negatives": max_negatives, "pad_negatives": pad_negatives,
        "query_prompt": query_prompt, "passage_prompt": passage_prompt, "max_length": max_length,
        "query_max_length": query_max_length, "passage_max_length": passage_max_length, "pooling": pooling,
        "lora": lora, "lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
        "lora_merge": lora_merge, "qlora": qlora, "device": device, "dtype": dtype, "seed": seed,
        "trust_remote_code": trust_remote_code, "export_dir": export_dir,
    })
    report(run_train(store, cfg, from_ref, force=force, verbose=verbose))


@command("eval", "Score term -> definition retrieval (recall@k, MRR@10, NDCG@10) on a held-out split.")
def evaluate(
    model: Annotated[str, typer.Option(help="A train artifact (train@latest), its directory, or a model path/id.")] = "train@latest",
    data: Annotated[str | None, typer.Option(help="Data artifact with the split (default: the train artifact's).")] = None,
    split: Annotated[str | None, typer.Option(help="test | dev.")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Put the base model and the trained one side by side.")] = False,
    reverse: Annotated[bool | None, typer.Option("--reverse/--no-reverse", help="Also definition -> term.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Texts per encoding batch.")] = None,
    query_prompt: Annotated[str | None, typer.Option(help="Query prefix (default: the model's own).")] = None,
    passage_prompt: Annotated[str | None, typer.Option(help="Passage prefix (default: the model's own).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N | mps.")] = None,
    data_dir: DataDir = Path("data"),
    config: ConfigFile = None,
    force: Force = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    from pipe_embed.training.config import load_eval_config
    from pipe_embed.training.evaluate import print_metrics, run_eval

    store = setup(data_dir, verbose, quiet)
    cfg = load_eval_config(config, {"split": split, "reverse": reverse, "batch_size": batch_size,
                                    "query_prompt": query_prompt, "passage_prompt": passage_prompt,
                                    "device": device})
    outcome = run_eval(store, cfg, model, data, compare_base=compare, force=force)
    print_metrics(outcome.artifact)
    report(outcome)
