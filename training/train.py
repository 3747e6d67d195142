"""The train stage: fine-tune a sentence-transformers model on a mine (or compose) artifact.

One `SentenceTransformerTrainer` run with in-batch plus mined negatives (MNRL by default), batches
free of duplicate texts, dev-split retrieval evaluation every N steps and at each epoch end, the
best checkpoint kept, early stopping, JSON and TensorBoard logs. The run works in the store's
resumable work directory, so a killed run picks up from its last checkpoint when started again
with the same inputs and config. The artifact holds `model/` (plain sentence-transformers format,
with a model card), `logs/` and `metrics.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pipe_embed.pipeline.core.config import as_dict, versioned_dict
from pipe_embed.pipeline.core.console import debug, info, warn
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.hashing import hash_file
from pipe_embed.pipeline.core.models import (
    load_model,
    model_fingerprint,
    pick_device,
    quiet_libraries,
    resolve_model,
    resolve_model_ref,
)
from pipe_embed.pipeline.core.pairs import PairRow, pairs_file, read_pairs
from pipe_embed.pipeline.core.store import Artifact, RunOutcome, StageResult, Store, finite_json
from pipe_embed.training.callbacks import (
    STEP_LOG,
    EpochEndCallback,
    FiniteLossCallback,
    JsonLogCallback,
    NonFiniteTraining,
    ProgressCallback,
    read_log,
    summarize_log,
    truncate_log,
)
from pipe_embed.training.card import write_model_card
from pipe_embed.training.checks import (
    StepPlan,
    WeightSnapshot,
    below_base_warning,
    check_finite_outputs,
    check_finite_weights,
    plan_steps,
    plan_warning,
    unchanged_warning,
    with_min_steps,
)
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.data import (
    PairsFile,
    TrainingRows,
    build_rows,
    load_pairs,
    negative_columns,
    stream_rows,
    to_dataset,
)
from pipe_embed.training.evaldata import (
    EvalSet,
    final_set_metrics,
    fingerprints,
    load_eval_sets,
    mean_metric_key,
    sets_evaluator,
)
from pipe_embed.training.evaluate import (
    METRIC_NAMES,
    RetrievalTask,
    data_dir_for,
    evaluate_task,
    measured_queries,
    retrieval_task,
    small_split_warning,
    warn_once,
)
from pipe_embed.training.lora import add_lora, lora_error, merge_lora
from pipe_embed.training.pooling import configure_pooling
from pipe_embed.training.precision import detect_precision
from pipe_embed.training.schedules import schedule_arguments
from pipe_embed.training.tracking import tracked_training, trainer_report_to

STAGE = "train"
FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
MODEL_DIR = "model"
LOG_DIR = "logs"
BASE_DEV_CACHE = "base_dev_metrics.json"
# -- device and precision --------------------------------------------------------------------------

def with_precision(config: TrainConfig, device: str) -> TrainConfig:
    """The config with `auto` precision replaced by the one this machine takes, said in one line.

    The version then names what the run trains in: bf16 autocast gives other weights than f32.
    """
    choice = detect_precision(config.precision, device)
    info(choice.line())
    return dataclasses.replace(config, precision=choice.precision)


def check_qlora(config: TrainConfig, device: str) -> None:
    """QLoRA needs CUDA and bitsandbytes: say so plainly otherwise."""
    if not config.qlora:
        return
    import importlib.util

    if not device.startswith("cuda"):
        raise ConfigError(f"field 'qlora': 4-bit QLoRA needs a CUDA GPU (device is {device})",
                          hint="use --lora without --qlora on this machine")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("field 'qlora': 4-bit QLoRA needs bitsandbytes", hint="run: pip install bitsandbytes")


# -- model -----------------------------------------------------------------------------------------

def prepare_model(config: TrainConfig, device: str) -> Any:
    """Load the base model and apply tokenizer, pooling, lengths and prompts from the config."""
    if config.local_files_only:
        os.environ["HF_HUB_OFFLINE"] = "1"  # never contact a hub, for this process
    model_kwargs: dict[str, Any] = {}
    if config.qlora:
        import torch
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = load_model(config.model, device=device, trust_remote_code=config.trust_remote_code,
                       model_kwargs=model_kwargs or None)
    if config.tokenizer:
        from transformers import AutoTokenizer

        model[0].processor = AutoTokenizer.from_pretrained(resolve_model(config.tokenizer),
                                                           trust_remote_code=config.trust_remote_code,
                                                           local_files_only=config.local_files_only)
    configure_pooling(model, pooling=config.pooling, pool_prompt=config.pool_prompt,
                      padding_side=config.padding_side, model_name=config.model)
    if config.max_length:
        model.max_seq_length = config.max_length
    if config.query_max_length or config.passage_max_length:
        model[0].query_length = config.query_max_length or model.max_seq_length
        model[0].document_length = config.passage_max_length or model.max_seq_length
    if config.query_prompt:
        model.prompts["query"] = config.query_prompt
    if config.passage_prompt:
        model.prompts["document"] = config.passage_prompt
    return model


def merge_qlora(model: Any, config: TrainConfig, device: str) -> Any:
    """QLoRA: adapters cannot fold into 4-bit weights; reload the base in full precision and merge there."""
    from peft import set_peft_model_state_dict

    state = model.get_adapter_state_dict()
    plain = dataclasses.replace(config, qlora=False)
    full = prepare_model(plain, device)
    add_lora(full, plain)
    set_peft_model_state_dict(full[0].auto_model, state)
    merge_lora(full)
    return full


def build_loss(config: TrainConfig, model: Any, device: str) -> Any:
    """The chosen loss (see training.losses), built with its own settings."""
    return config.loss_entry().build(model, config, device, config.loss_params())


def dev_evaluator(task: RetrievalTask, batch_size: int) -> Any:
    """sentence-transformers' IR evaluator on the dev split (what the trainer tracks)."""
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )

    return InformationRetrievalEvaluator(  # texts as Any: the evaluator's dict[str, SingleInput] is invariant
        cast("dict[str, Any]", task.queries), cast("dict[str, Any]", task.corpus), task.relevant, name="dev",
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 5, 10], precision_recall_at_k=[1, 5, 10], map_at_k=[100],
        batch_size=batch_size, write_csv=False, show_progress_bar=False)


def training_arguments(config: TrainConfig, output_dir: Path, device: str, *, has_dev: bool,
                       num_negatives: int, metric_key: str) -> Any:
    """The trainer's arguments from our config (strategies, precision, sampler, prompts, lengths)."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    precision = detect_precision(config.precision, device)
    max_steps = config.max_steps or (config.steps_per_epoch * config.epochs if config.steps_per_epoch else -1)
    doc_columns = ["positive", *negative_columns(num_negatives)]
    prompts = {}
    if config.query_prompt:
        prompts["anchor"] = config.query_prompt
    if config.passage_prompt:
        prompts.update(dict.fromkeys(doc_columns, config.passage_prompt))
    router = {}
    if config.query_max_length or config.passage_max_length:
        router = {"anchor": "query", **dict.fromkeys(doc_columns, "document")}
    optimizer: dict[str, Any] = {} if config.optimizer == "auto" else {"optim": config.optimizer}
    strategy: dict[str, Any]
    if has_dev:
        strategy = {"eval_strategy": "steps", "eval_steps": config.eval_steps, "save_strategy": "steps",
                    "save_steps": config.eval_steps} if config.eval_steps else \
                   {"eval_strategy": "epoch", "save_strategy": "epoch"}
        strategy.update(load_best_model_at_end=True, metric_for_best_model=metric_key, greater_is_better=True)
    else:
        strategy = {"eval_strategy": "no", "save_strategy": "steps", "save_steps": config.eval_steps} \
            if config.eval_steps else {"eval_strategy": "no", "save_strategy": "epoch"}
    try:
        return SentenceTransformerTrainingArguments(
            output_dir=str(output_dir),
            num_train_epochs=config.epochs,
            max_steps=max_steps,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.batch_size,
            gradient_accumulation_steps=config.grad_accum_steps,
            learning_rate=config.lr,
            weight_decay=config.weight_decay,
            **schedule_arguments(lr_scheduler=config.lr_scheduler, warmup_steps=config.warmup_steps,
                                 warmup_ratio=config.warmup_ratio, lr_cycles=config.lr_cycles),
            **optimizer,
            fp16=precision.fp16,
            bf16=precision.bf16,
            use_cpu=device == "cpu",
            dataloader_num_workers=config.num_workers,
            seed=config.seed,
            data_seed=config.seed,
            batch_sampler=BatchSamplers.BATCH_SAMPLER if config.stream else BatchSamplers.NO_DUPLICATES,
            prompts=prompts or None,
            router_mapping=router or None,
            save_total_limit=config.keep_checkpoints,
            logging_steps=1,
            logging_nan_inf_filter=False,  # a NaN loss must reach the log (and FiniteLossCallback), not be averaged away
            report_to=trainer_report_to(config.report_to) or "none",  # mlflow/wandb into the run pipe opened
            disable_tqdm=True,
            restore_callback_states_from_checkpoint=True,
            **_checkpointing_flag(config.grad_checkpointing),
            **strategy,
        )
    except ValueError as exc:
        text = str(exc).splitlines()[0]
        field = "optimizer" if "optim" in text.lower() else "config"
        raise ConfigError(f"field '{field}': {text}") from exc


def _checkpointing_flag(enabled: bool) -> dict[str, Any]:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing; pass whichever exists."""
    import dataclasses

    from sentence_transformers import SentenceTransformerTrainingArguments

    names = {f.name for f in dataclasses.fields(SentenceTransformerTrainingArguments)}
    if not enabled:
        return {}
    return {"activation_checkpointing": True} if "activation_checkpointing" in names \
        else {"gradient_checkpointing": True}


def trainer_class() -> type:
    """SentenceTransformerTrainer without its automatic model card (we write our own, offline)."""
    from sentence_transformers import SentenceTransformerTrainer

    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            return None

    return Trainer


def last_checkpoint(directory: Path) -> Path | None:
    """The newest `checkpoint-N` that finished saving (a kill mid-save leaves one without its state)."""
    if not directory.is_dir():
        return None
    found = []
    for path in directory.glob("checkpoint-*"):
        step = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    for _step, path in sorted(found, reverse=True):
        complete = (path / "trainer_state.json").is_file() and (path / "optimizer.pt").is_file()
        if complete:
            return path
        warn(f"{path.name} is incomplete (the run was killed while saving it); resuming from an earlier one")
    return None


def _tensorboard_callback(log_dir: Path) -> Any | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback
    except ImportError:
        debug("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return None
    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))


def _pad_batches(model: Any, multiple: int) -> dict[str, Any] | None:
    """Pad token batches to a multiple of `multiple` while training; returns the settings to restore."""
    if not multiple or not hasattr(model[0], "processing_kwargs"):
        return None
    saved = dict(model[0].processing_kwargs)
    text = {**saved.get("text", {}), "pad_to_multiple_of": multiple}
    model[0].processing_kwargs = {**saved, "text": text}
    return saved


def _base_dev_metrics(model: Any, dev: RetrievalTask, cache: Path) -> dict[str, float]:
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    metrics = evaluate_task(model, dev)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(metrics) + "\n", encoding="utf-8")
    return metrics


# -- the training run in a directory, step by step ---------------------------------------------------

@dataclass
class RunDir:
    """Where one training run works: logs, checkpoints, and the checkpoint it resumes from."""

    work: Path
    logs: Path
    checkpoints: Path
    resume: Path | None
    resumed_step: int


@dataclass
class ReadyModel:
    """The model about to train, with what was measured or changed on it beforehand."""

    model: Any
    base_dev: dict[str, float] | None
    saved_processing: dict[str, Any] | None  # tokenizer settings to restore before saving
    baseline: WeightSnapshot


@dataclass
class TrainedModel:
    """The model the run keeps (best checkpoint, LoRA merged), with the trainer's record of the run."""

    model: Any
    state: Any
    output: Any
    dev: dict[str, float] | None
    max_weight_change: float | None


def start_device(config: TrainConfig) -> str:
    """Pick the device and refuse precision/QLoRA settings it cannot run."""
    device = pick_device(config.device)
    detect_precision(config.precision, device)
    check_qlora(config, device)
    if device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(int(device.split(":")[1]))
    return device


def check_plan(config: TrainConfig, rows: TrainingRows, dev: RetrievalTask | None) -> StepPlan:
    """Before loading anything: refuse no rows, warn when the run cannot learn or its dev split is noise."""
    if rows.num_rows == 0:
        raise PipeError("no training rows left", hint="check the pairs file and --pad-negatives")
    plan = plan_steps(config, rows.num_rows)
    problem = plan_warning(config, plan)
    if problem:
        warn_once(problem)
    small = small_split_warning("dev", measured_queries(dev), config.metric) if dev is not None else None
    if small:
        warn_once(f"{small}; the best checkpoint and early stopping follow it")
    return plan


def check_steps(config: TrainConfig, rows: TrainingRows) -> None:
    """Refuse, before any model loads, a run that has no rows to train on or would take no optimizer step."""
    if rows.num_rows == 0:
        raise PipeError("no training rows left", hint="check the pairs file and --pad-negatives")
    config = with_min_steps(config, rows.num_rows)
    plan = plan_steps(config, rows.num_rows)
    if plan.steps < 1 or plan.lr_never_moves:  # no step that could change a weight
        raise PipeError(plan_warning(config, plan) or f"this run would take no optimizer step ({rows.num_rows} rows)")


def check_export_dir(export_dir: str | None) -> None:
    """Refuse an --export-dir that cannot become a directory, before any work (the copy comes last)."""
    if not export_dir:
        return
    target = Path(export_dir).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"field 'export_dir': {target} is a file, not a directory",
                          hint="give a directory path (created if missing)")
    parent = target
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"field 'export_dir': {parent} is a file, so {target} cannot be created",
                          hint="give a directory path (created if missing)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"field 'export_dir': {parent} is not writable", hint="give a directory you can write to")


def open_run_dir(work: Path) -> RunDir:
    """Logs and checkpoints under `work`; the last complete checkpoint to resume from, if any."""
    logs = work / LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    checkpoints = work / CHECKPOINTS
    resume = last_checkpoint(checkpoints)
    resumed_step = int(resume.name.split("-")[-1]) if resume else 0
    truncate_log(logs / STEP_LOG, resumed_step)
    if resume:
        info(f"resuming from {resume.name} (step {resumed_step})")
    return RunDir(work, logs, checkpoints, resume, resumed_step)


def load_trainable_model(config: TrainConfig, device: str, dev: RetrievalTask | None, run: RunDir) -> ReadyModel:
    """The base model scored on dev (once, cached), batch padding set, LoRA attached, weights snapshotted."""
    model = prepare_model(config, device)
    base_dev = _base_dev_metrics(model, dev, run.logs / BASE_DEV_CACHE) if dev and config.eval_base else None
    saved_processing = _pad_batches(model, config.pad_to_multiple_of)
    if config.lora:
        add_lora(model, config)
    return ReadyModel(model, base_dev, saved_processing, WeightSnapshot(model))


def dev_metric_key(model: Any, config: TrainConfig) -> str:
    """The trainer's name for the dev metric that picks the best checkpoint."""
    return f"eval_dev_{model.similarity_fn_name}_{config.metric}"


def build_trainer(config: TrainConfig, model: Any, rows: TrainingRows, dev: RetrievalTask | None, run: RunDir,
                  device: str, callbacks: Sequence[Any], eval_sets: Sequence[EvalSet] = ()) -> Any:
    """The sentence-transformers trainer with our arguments, loss, dev evaluator, logs and progress bar.

    With `eval_sets` every set is scored and their mean picks the best checkpoint.
    """
    from transformers import EarlyStoppingCallback, PrinterCallback

    has_dev = dev is not None or bool(eval_sets)
    metric_key = (mean_metric_key(model.similarity_fn_name, config.metric) if eval_sets
                  else dev_metric_key(model, config))
    args = training_arguments(config, run.checkpoints, device, has_dev=has_dev,
                              num_negatives=rows.num_negatives, metric_key=metric_key)
    if rows.stream is not None and args.max_steps <= 0:  # a stream has no length: plan the steps ourselves
        args.max_steps = plan_steps(config, rows.num_rows).steps
    ours: list[Any] = [JsonLogCallback(run.logs / STEP_LOG), FiniteLossCallback(config), EpochEndCallback(evaluate=has_dev),
                       ProgressCallback("train", metric=config.metric, key=metric_key if eval_sets else None)]
    if has_dev and config.patience:
        ours.append(EarlyStoppingCallback(early_stopping_patience=config.patience))
    tensorboard = _tensorboard_callback(run.logs / "tensorboard") if "tensorboard" in config.report_to else None
    if tensorboard is not None:
        ours.append(tensorboard)
    if eval_sets:
        evaluator = sets_evaluator(eval_sets, args.per_device_eval_batch_size)
    else:
        evaluator = dev_evaluator(dev, args.per_device_eval_batch_size) if dev is not None else None
    trainer = trainer_class()(
        model=model, args=args, train_dataset=to_dataset(rows), loss=build_loss(config, model, device),
        evaluator=evaluator, callbacks=[*ours, *callbacks])
    trainer.remove_callback(PrinterCallback)
    return trainer


def fit(trainer: Any, run: RunDir) -> Any:
    """Train (from the resume checkpoint, if any); the progress bar and TensorBoard writer end either way."""
    try:
        return trainer.train(resume_from_checkpoint=str(run.resume) if run.resume else None)
    finally:
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, ProgressCallback):
                callback.close()
            writer = getattr(callback, "tb_writer", None)
            if writer is not None:
                writer.close()


def sample_texts(rows: TrainingRows, dev: RetrievalTask | None, count: int = 2) -> list[str]:
    """A few anchors and positives (or dev queries, for streamed rows) to check the trained model's outputs on."""
    texts = [*rows.columns.get("anchor", [])[:count], *rows.columns.get("positive", [])[:count]]
    if not texts and dev is not None:
        texts = list(dev.queries.values())[:count]
    return texts


def drop_autocast(model: Any) -> None:
    """Undo the autocast wrapper the trainer (accelerate) put around `forward` for mixed precision."""
    original = getattr(model, "_original_forward", None)
    if original is not None:
        model.forward = original
        del model._original_forward


def check_learned(baseline: WeightSnapshot, model: Any, plan: StepPlan) -> float | None:
    """How far the kept weights moved from the base; a loud warning when not at all."""
    change = baseline.max_change(model)
    if change == 0.0:
        warn(unchanged_warning(plan))
    return change


def pick_best(config: TrainConfig, trainer: Any, output: Any, dev: RetrievalTask | None, run: RunDir,
              device: str, change: float | None) -> TrainedModel:
    """The model to keep (the trainer already reloaded the best checkpoint), LoRA merged, and its dev scores."""
    state, model = trainer.state, trainer.model
    if config.lora and config.lora_merge:
        if config.qlora:
            model = merge_qlora(model, config, device)
        else:
            merge_lora(model)  # in place
    final_dev = None
    if dev is not None:
        # Logged scores are those of autocast inference: re-score the kept model in f32, as it is saved.
        rescore = (config.qlora and config.lora_merge) or config.precision != "f32"
        final_dev = None if rescore else _logged_dev_metrics(read_log(run.logs / STEP_LOG), state,
                                                             dev_metric_key(model, config), dev)
        if final_dev is None:
            final_dev = evaluate_task(model, dev)
    return TrainedModel(model, state, output, final_dev, change)


def save_model(config: TrainConfig, trained: TrainedModel, ready: ReadyModel, run: RunDir) -> Path:
    """Write the kept model to `model/` in plain sentence-transformers format (no training-only settings)."""
    model_dir = run.work / MODEL_DIR
    if model_dir.exists():
        shutil.rmtree(model_dir)
    if ready.saved_processing is not None and not (config.qlora and config.lora_merge):
        trained.model[0].processing_kwargs = ready.saved_processing  # a training-time setting, not the model's
    trained.model.save(str(model_dir), create_model_card=False)
    return model_dir


def _json_values(value: Any) -> Any:
    """`value` in JSON's types, anything else as its str (json's default=str); a NaN stays for finite_json."""
    return json.loads(json.dumps(value, default=str))


def write_report(config: TrainConfig, rows: TrainingRows, run: RunDir, trained: TrainedModel,
                 base_dev: dict[str, float] | None, device: str, data_ref: str | None) -> StageResult:
    """metrics.json, logs/epochs.json and summary.json, the model card; drop the checkpoints; the result."""
    state, output, final_dev = trained.state, trained.output, trained.dev
    epochs = summarize_log(read_log(run.logs / STEP_LOG))
    change = trained.max_weight_change
    train_metrics = {
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "epochs": round(float(state.epoch or 0), 4),
        "train_loss": output.training_loss,
        "samples_per_second": output.metrics.get("train_samples_per_second"),
        "runtime_s": output.metrics.get("train_runtime"),
        "resumed_from_step": run.resumed_step,
        "early_stopped": state.global_step < state.max_steps,
        "best_checkpoint_step": _checkpoint_step(state.best_model_checkpoint),
        "best_dev_metric": state.best_metric,
        "max_weight_change": change,
    }
    metrics: dict[str, Any] = {"train": train_metrics}
    if final_dev is not None:
        metrics["dev"] = final_dev
    if base_dev is not None:
        metrics["dev_base"] = base_dev
    summary = {"config": as_dict(config), "data": data_ref, "data_stats": rows.stats, **metrics,
               "per_epoch": epochs, "device": device}
    # strict JSON: a non-finite number (a NaN loss) is written as null
    (run.logs / "epochs.json").write_text(finite_json(epochs), encoding="utf-8")
    (run.logs / "summary.json").write_text(finite_json(_json_values(summary)), encoding="utf-8")
    (run.work / "metrics.json").write_text(finite_json(metrics), encoding="utf-8")
    write_model_card(run.work / MODEL_DIR, base_model=config.model, data_ref=data_ref, config=versioned_dict(config),
                     metrics=metrics, data_stats=rows.stats)
    shutil.rmtree(run.checkpoints, ignore_errors=True)
    headline: dict[str, Any] = {"steps": state.global_step, "loss": round(output.training_loss, 4)}
    if final_dev is not None:
        headline[f"dev_{config.metric}"] = round(final_dev[config.metric], 4)
    if base_dev is not None:
        headline[f"base_{config.metric}"] = round(base_dev[config.metric], 4)
    below = below_base_warning(final_dev, base_dev, config.metric)
    if below:
        warn(below)
    stats = {**rows.stats, "device": device, "weights_changed": None if change is None else change > 0,
             "max_weight_change": change, "below_base_on_dev": below is not None if base_dev else None,
             "peak_rss_mb": peak_rss_mb()}
    return StageResult(stats=stats, metrics=metrics, headline=headline)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (what a laptop user needs to know fits)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)  # bytes on macOS, KiB elsewhere


def train_in_dir(config: TrainConfig, rows: TrainingRows, dev: RetrievalTask | None, work: Path, *,
                 data_ref: str | None = None, callbacks: Sequence[Any] = (), verbose: bool = False,
                 eval_sets: Sequence[EvalSet] = ()) -> StageResult:
    """Train into `work` (resuming from its last checkpoint), save the model, logs and metrics.

    `eval_sets` (see training.evaldata) are scored at every evaluation; their mean picks the best checkpoint.
    """
    import transformers

    device = start_device(config)
    if config.precision == "auto":  # run_train resolves it first; a direct caller gets the same choice
        config = with_precision(config, device)
    raised = with_min_steps(config, rows.num_rows)
    if raised.epochs != config.epochs:
        info(f"{raised.epochs} epochs instead of {config.epochs}: {rows.num_rows} rows need them for at least "
             f"{config.min_steps} optimizer steps (--min-steps)")
    config = raised
    plan = check_plan(config, rows, dev)
    run = open_run_dir(work)
    with quiet_libraries(verbose):
        transformers.set_seed(config.seed)
        ready = load_trainable_model(config, device, dev, run)
        trainer = build_trainer(config, ready.model, rows, dev, run, device, callbacks, eval_sets)
        output = fit(trainer, run)
        check_finite_weights(trainer.model, config, trainer.state.global_step)
        drop_autocast(trainer.model)  # the kept model is scored (and saved) as it will be used: in f32
        check_finite_outputs(trainer.model, sample_texts(rows, dev), config, trainer.state.global_step)
        change = check_learned(ready.baseline, trainer.model, plan)
        trained = pick_best(config, trainer, output, dev, run, device, change)
        save_model(config, trained, ready, run)
    result = write_report(config, rows, run, trained, ready.base_dev, device, data_ref)
    if eval_sets:  # each set's scores and their mean, for the kept checkpoint
        sets = final_set_metrics(read_log(run.logs / STEP_LOG), _checkpoint_step(trained.state.best_model_checkpoint),
                                 eval_sets, trained.model)
        result.metrics["eval_sets"] = sets
        result.headline[f"eval_mean_{config.metric}"] = round(sets["mean"][config.metric], 4)
        (run.work / "metrics.json").write_text(finite_json(result.metrics), encoding="utf-8")
    return result


def _logged_dev_metrics(entries: list[dict[str, Any]], state: Any, metric_key: str,
                        dev: RetrievalTask) -> dict[str, float] | None:
    """The dev metrics the trainer logged for the checkpoint it kept (no second pass over the corpus)."""
    step = _checkpoint_step(state.best_model_checkpoint)
    prefix = metric_key[: -len(metric_key.rsplit("_", 1)[-1])]  # eval_dev_<similarity>_
    for entry in reversed(entries):
        if entry.get("kind") == "eval" and entry.get("step") == step and metric_key in entry:
            metrics = {name: float(entry[prefix + name]) for name in METRIC_NAMES if prefix + name in entry}
            if len(metrics) != len(METRIC_NAMES):
                return None
            metrics["queries"] = len([q for q in dev.queries if dev.relevant.get(q)])
            metrics["corpus"] = len(dev.corpus)
            return metrics
    return None


def _checkpoint_step(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return int(Path(path).name.split("-")[-1])
    except ValueError:
        return None



# -- the stage -------------------------------------------------------------------------------------

# What a data file passed where an artifact belongs looks like (compose reads all of these).
PAIRS_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ".gz")


class PairsFileNotArtifact(PipeError):
    """`--from` named a raw pairs file: it must be composed into a data artifact first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path}: is a pairs file, not a data artifact",
                         hint=f"turn it into one with `pipe compose --input {path}`, then train with "
                              "--from compose@latest")


def pairs_file_ref(ref: str) -> Path | None:
    """The file a `--from` value names when it is a data file rather than an artifact ref, else None."""
    if "@" in ref:
        return None
    path = Path(ref).expanduser()
    if path.is_file() and path.name != "manifest.json":
        return path
    if not path.exists() and path.suffix.lower() in PAIRS_FILE_SUFFIXES:
        raise PipeError(f"{ref}: no such file, and not an artifact ref",
                        hint="pass a data artifact (compose@latest, mine@latest) or an existing pairs file "
                             "to `pipe compose --input`")
    return None


@dataclass
class TrainingData:
    """What one training run reads: the rows, the dev task and where they came from."""

    artifact: Artifact | None
    rows: list[PairRow] | PairsFile  # a PairsFile when streamed
    dev: RetrievalTask | None
    source: str
    fingerprint: dict[str, Any]


def resolve_data(store: Store, config: TrainConfig, data: str | Artifact | None) -> TrainingData:
    """The training data: an artifact (ref or object), mine@latest, compose@latest, or pairs_path.

    A raw pairs file (a FlagEmbedding `flag.jsonl`, a CSV) given as `data` is refused with
    PairsFileNotArtifact: it has no dev split or corpus until `pipe compose` turns it into an artifact.
    """
    artifact: Artifact | None
    if data and config.pairs_path:
        raise ConfigError(f"field 'pairs_path': {config.pairs_path} and the data {data if isinstance(data, str) else data.ref}"
                          " both name what to train on", hint="give --from or --pairs-path, not both")
    if isinstance(data, Artifact):
        artifact = data
    elif data:
        path = pairs_file_ref(str(data))
        if path is not None:
            raise PairsFileNotArtifact(path)
        if Path(str(data)).name == "manifest.json":
            data = str(Path(str(data)).parent)
        artifact = store.resolve(data)
    elif config.pairs_path:
        path = Path(config.pairs_path)
        rows = load_pairs(path, stream=config.stream)
        warn(f"{path}: a plain pairs file has no dev split: training without evaluation or early stopping")
        return TrainingData(None, rows, None, str(path), {"pairs_sha256": hash_file(path)})
    else:
        candidates = store.versions("mine") or store.versions("compose")
        if not candidates:
            raise PipeError(f"no mine or compose artifact in {store.root}",
                            hint="run `pipe mine` (or `pipe compose`) first, or pass --from REF")
        artifact = candidates[0]
    train_path = artifact.file(pairs_file("train"))
    if not train_path.is_file():
        raise PipeError(f"{artifact.ref}: has no {train_path.name} to train on",
                        hint="pass a mine or compose artifact with --from")
    rows = load_pairs(train_path, stream=config.stream)
    if config.with_dev:
        return TrainingData(artifact, [*rows, *dev_rows(store, artifact)], None, artifact.ref, {})
    dev = None
    try:
        dev = retrieval_task(data_dir_for(store, artifact), "dev")
    except PipeError as exc:
        warn(f"no dev split ({exc.line()}): training without evaluation or early stopping")
    if dev is not None and not dev.queries:
        dev = None
    return TrainingData(artifact, rows, dev, artifact.ref, {})


def dev_rows(store: Store, artifact: Artifact) -> list[PairRow]:
    """The dev split's pairs (no mined negatives: they are padded like any short anchor) for a refit."""
    path = data_dir_for(store, artifact) / pairs_file("dev")
    if not path.is_file():
        raise PipeError(f"{artifact.ref}: no dev split to refit on (--with-dev)",
                        hint="drop --with-dev, or compose with --dev-fraction above 0")
    rows = read_pairs(path)
    info(f"refit: training on {len(rows)} dev anchors too (no dev evaluation, the last step's model is kept)")
    return rows


def training_rows(config: TrainConfig, source: TrainingData) -> TrainingRows:
    """The rows as trainer columns, as the loss asks: mined negatives (capped) or none, scores or none."""
    loss = config.loss_entry()
    max_negatives = config.max_negatives
    if loss.needs_negatives and loss.max_negatives and not 0 < max_negatives <= loss.max_negatives:
        many = f"{loss.max_negatives} mined negative{'s' if loss.max_negatives != 1 else ''}"
        info(f"{loss.name} takes at most {many} per row: using each anchor's first (hardest)")
        max_negatives = loss.max_negatives
    if config.stream:  # streamed: a pass to count, then read again on every pass
        return stream_rows(source.rows, batch_size=config.batch_size, max_negatives=max_negatives,
                           pad=config.pad_negatives, seed=config.seed, with_negatives=loss.needs_negatives)
    rows = build_rows(source.rows, max_negatives=max_negatives, pad=config.pad_negatives, seed=config.seed,
                      with_negatives=loss.needs_negatives, scores=loss.needs_scores)
    if loss.needs_scores and rows.num_rows == 0 and rows.stats["anchors"]:
        raise PipeError(f"the {loss.name} loss needs positive_score and negative_scores in the rows, and no anchor "
                        "has them for all its kept negatives", hint="train on a `pipe mine` artifact (it writes "
                                                                  "the scores), or pick another --loss")
    return rows


def loss_models(config: TrainConfig) -> dict[str, str]:
    """The models the chosen loss loads besides the base model, by setting name (gist: guide_model)."""
    params = config.loss_params()
    found = {}
    for name in config.loss_entry().model_fields:
        value = getattr(params, name, None)
        if value:
            found[name] = value
    return found


def version_extra(config: TrainConfig, source: TrainingData) -> dict[str, Any]:
    """What besides config and input artifacts decides the result: the weights' hashes, a pairs file's."""
    extra: dict[str, Any] = {"base_weights": model_fingerprint(config.model), **source.fingerprint}
    for name, model in loss_models(config).items():  # gist's guide_model -> guide_weights
        extra[f"{name.removesuffix('_model')}_weights"] = model_fingerprint(model)
    if config.tokenizer:
        extra["tokenizer"] = config.tokenizer
    return extra


def report_rows(rows: TrainingRows) -> None:
    """Say how anchors short of mined negatives were handled (only when training runs, not on a cache hit)."""
    if rows.stats["anchors_padded"]:
        info(f"{rows.stats['anchors_padded']} of {rows.stats['anchors']} anchors had fewer than "
             f"{rows.num_negatives} mined negatives: padded with other anchors' positives")
    if rows.stats["anchors_dropped_short"]:
        warn(f"{rows.stats['anchors_dropped_short']} anchors dropped for too few negatives (pad_negatives=drop)")


def export_model(artifact: Artifact, target: Path) -> None:
    """Copy a train artifact's model to a directory of the user's choosing."""
    shutil.copytree(artifact.file(MODEL_DIR), target, dirs_exist_ok=True)
    info(f"copied the model to {target}")


def follow_training(job: Any, shared_work: Path) -> None:
    """The training steps of `train_in_dir` on a rank > 0: no base-model score, no saving, no report.

    Checkpoints go to rank 0's directory (the trainer saves the model there from rank 0 only, and each
    rank's RNG state); logs to a scratch directory removed afterwards. The best checkpoint is loaded
    by rank 0 alone: this rank's weights are dropped when training ends.
    """
    import tempfile

    import transformers

    from pipe_embed.training.distributed import current

    config = dataclasses.replace(job.config, eval_base=False)
    device = start_device(config)
    scratch = Path(tempfile.mkdtemp(prefix=f"pipe-train-rank{current().rank}-"))
    try:
        checkpoints = shared_work / CHECKPOINTS
        resume = last_checkpoint(checkpoints)
        run = RunDir(scratch, scratch / LOG_DIR, checkpoints, resume, int(resume.name.split("-")[-1]) if resume else 0)
        run.logs.mkdir(parents=True, exist_ok=True)
        with quiet_libraries(False):
            transformers.set_seed(config.seed)
            ready = load_trainable_model(config, device, job.dev, run)
            trainer = build_trainer(config, ready.model, job.rows, job.dev, run, device, (), job.eval_sets)
            trainer._load_best_model = lambda: None  # rank 0 loads and keeps the best checkpoint
            fit(trainer, run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def with_model_paths(store: Store, config: TrainConfig) -> TrainConfig:
    """The config with model refs (`train@<version>`) replaced by their model paths.

    Iterate names the previous round's model by its ref; a ref and the path it resolves to train
    the same weights, and the version keys on those weights' hash, not on either spelling.
    """
    config = dataclasses.replace(config, model=resolve_model_ref(store, config.model))
    models = loss_models(config)
    if not models:
        return config
    params = dataclasses.replace(config.loss_params(),
                                 **{name: resolve_model_ref(store, ref) for name, ref in models.items()})
    return dataclasses.replace(config, params={**config.params, config.loss: params})


def run_train(store: Store, config: TrainConfig, data: str | Artifact | None = None, force: bool = False,
              callbacks: Sequence[Any] = (), verbose: bool = False) -> RunOutcome:
    """Train on a data artifact (default mine@latest, else compose@latest); a train artifact.

    `config.model` may be a hub id, a local directory or a train artifact's ref (`train@<version>`,
    as iterate passes the previous round's model). The version covers the config as given, the data
    artifact and the base weights' hash, so the same run is a cache hit and a killed run resumes in
    the same work directory.
    """
    device = start_device(config)
    config = with_precision(config.resolved(), device)  # the version names the loss's settings and the precision
    check_export_dir(config.export_dir)
    loaded = with_model_paths(store, config)  # the manifest keeps the ref; the work loads the path
    source = resolve_data(store, loaded, data)
    rows = training_rows(loaded, source)
    check_steps(loaded, rows)  # before any model loads
    extra = version_extra(loaded, source)  # also fails on a model directory that is not there
    # more eval sets (their data is part of the version), and a tracker run per training
    eval_sets = load_eval_sets(store, loaded.eval_data, source.dev, loaded.eval_with_dev)
    if eval_sets:
        extra["eval_sets"] = fingerprints(eval_sets)
    with tracked_training(loaded.report_to, store.root, experiment=loaded.experiment, params=as_dict(config),
                          data_ref=source.source) as tracker:

        def build(work: Path) -> StageResult:
            report_rows(rows)
            tracker.start(work)  # only when training really runs: a cache hit opens no run
            try:
                return train_in_dir(loaded, rows, source.dev, work, data_ref=source.source, callbacks=callbacks,
                                    verbose=verbose, eval_sets=eval_sets)
            except NonFiniteTraining:
                shutil.rmtree(work, ignore_errors=True)  # nothing to resume: the same settings diverge again
                raise

        # under torchrun rank 0 runs the stage and ranks > 0 train in step (else plain store.run)
        from pipe_embed.training.distributed import TrainJob, run_stage

        outcome = run_stage(store, TrainJob(loaded, rows, source.dev, eval_sets), follow=follow_training, stage=STAGE,
                            format_version=FORMAT_VERSION, config=config,
                            inputs=[source.artifact] if source.artifact is not None else [], build=build,
                            extra=extra, force=force, resumable=True)
        tracker.close(outcome.artifact, outcome.cached)
    if config.export_dir:
        export_model(outcome.artifact, Path(config.export_dir))
    return outcome


__all__ = [
    "MODEL_DIR",
    "STAGE",
    "PairsFileNotArtifact",
    "TrainConfig",
    "add_lora",
    "build_loss",
    "lora_error",
    "merge_lora",
    "with_precision",
    "pairs_file_ref",
    "pick_device",
    "prepare_model",
    "resolve_data",
    "run_train",
    "train_in_dir",
]
