"""Training and evaluation configs, and the seed trainers' `config.json` layout mapped onto them.

`TrainConfig` is the one typed config of `pipe train` (defaults < config file < flags). A config
file is either our own layout (a `[train]` table or flat keys) or the seed layout
(`model_id`, `hf.*`, `device.*`, `train.*`, `optim.*`, `data.*`, `output.*`), recognised by its
sections; a bad value in it names the seed field (`train.batch_size`), not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_type_hints

from pipe_embed.pipeline.core.config import (
    _coerce,
    build_config,
    keep_sections,
    load_config,
    option,
    params_of,
    read_config_file,
)
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.models import DEFAULT_MODEL
from pipe_embed.pipeline.core.plugins import Registry
from pipe_embed.training.losses import LOSSES, Loss
from pipe_embed.training.precision import DTYPE_NAMES, PRECISIONS, precision_of_dtype

POOLINGS = ("model", "mean", "cls", "lasttoken", "max")
METRICS = ("mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10")


@dataclass
class TrainConfig:
    """How `pipe train` fine-tunes an embedding model on anchor/positive/negatives rows."""

    SECTIONS: ClassVar[Registry[Loss]] = LOSSES  # each loss's settings: [train.<loss>] and a --help panel
    model: str = option(DEFAULT_MODEL, "Base model: hub id, local directory, or a previous round's model dir.")
    tokenizer: str | None = option(None, "Tokenizer id/path when it differs from the model's.")
    loss: str = option(
        "mnrl", f"Loss by name ({', '.join(LOSSES.names())}); a loss's own settings are the flags of its panel "
                "below and the keys of its [train.<loss>] table.")
    temperature: float | None = option(
        None, "Softmax temperature of every loss (scale = 1/temperature); unset: the loss's own (0.05; gist 0.01).")
    epochs: int = option(1, "Passes over the training rows.")
    max_steps: int = option(0, "Stop after this many optimizer steps (0 = epochs decide).")
    min_steps: int = option(100, "Raise epochs (whole passes) until training takes at least this many optimizer steps, "
                               "so a small glossary still gets a real budget (0 = off; max_steps wins).")
    steps_per_epoch: int = option(0, "Seed-style cap: train steps_per_epoch x epochs steps (0 = whole data).")
    batch_size: int = option(16, "Rows per batch; every other row's texts are in-batch negatives.")
    grad_accum_steps: int = option(1, "Batches accumulated per optimizer step.")
    lr: float = option(5e-5, "Peak learning rate.")
    weight_decay: float = option(0.01, "AdamW weight decay.")
    warmup_ratio: float = option(0.1, "Share of steps with linear learning-rate warmup.")
    optimizer: str = option(
        "auto", "Optimizer as transformers names it (adamw_torch_fused, adamw_torch, adafactor, sgd, …); "
                "auto = transformers' default (fused AdamW where torch has it).")
    max_length: int = option(0, "Token limit for every text (0 = the model's max_seq_length).")
    query_max_length: int = option(0, "Token limit for anchors/queries (0 = max_length).")
    passage_max_length: int = option(0, "Token limit for positives/negatives (0 = max_length).")
    query_prompt: str = option("", "Instruction prefix for anchors/queries (saved into the model).")
    passage_prompt: str = option("", "Instruction prefix for positives/negatives (saved into the model).")
    pooling: Literal["model", "mean", "cls", "lasttoken", "max"] = option(
        "model", "Pooling: as the model defines it, or mean/cls/lasttoken/max.")
    max_negatives: int = option(0, "Mined negatives per row (columns negative_1..k); 0 = the most any anchor has.")
    pad_negatives: Literal["random", "drop"] = option(
        "random", "Anchors short of negatives: 'random' fills with other anchors' positives, 'drop' skips them.")
    lora: bool = option(False, "Train LoRA adapters (peft) instead of all weights.")
    lora_r: int = option(8, "LoRA rank.")
    lora_alpha: int = option(16, "LoRA alpha.")
    lora_dropout: float = option(0.05, "LoRA dropout.")
    lora_target_modules: list[str] = option([], "Modules to adapt (empty = peft's default for the architecture).")
    lora_merge: bool = option(True, "Merge the adapters into the weights and write a full model.")
    qlora: bool = option(False, "Load the base model in 4 bit for LoRA (needs a CUDA GPU and bitsandbytes).")
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
    precision: Literal["auto", "f32", "bf16", "fp16"] = option(
        "auto", "auto: bf16 autocast on a CPU with amx_bf16/avx512_bf16 or a bf16 GPU, fp16 on other GPUs, else f32; "
                "f32, bf16, fp16 (CUDA). Part of the version, as the precision auto chose (bf16 trains other weights).")
    grad_checkpointing: bool = option(False, "Recompute activations in backward (less memory, slower).")
    pad_to_multiple_of: int = option(0, "Pad token batches to a multiple of this (0 = off; 8 helps tensor cores).")
    num_workers: int = option(0, "Data loader worker processes (not part of the version).", versioned=False)
    seed: int = option(42, "Seed for model init, data order and negative padding.")
    eval_steps: int = option(50, "Evaluate on the dev split every N steps (0 = only at epoch end).")
    patience: int = option(3, "Stop after this many dev evaluations without improvement (0 = never).")
    metric: Literal["mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10"] = option(
        "mrr@10", "Dev metric that picks the best checkpoint and drives early stopping.")
    eval_base: bool = option(True, "Also score the base model on the dev split (for the card and iterate).")
    keep_checkpoints: int = option(2, "Checkpoints kept while training (the best one is always kept; not part of the version).",
                                  versioned=False)
    trust_remote_code: bool = option(False, "Run model code shipped with the model (off unless you trust it).")
    local_files_only: bool = option(False, "Never contact a model hub (not part of the version).", versioned=False)
    pairs_path: str | None = option(None, "Train on this pairs JSONL file instead of an artifact (no dev split; not with "
                                          "--from; its content, not its path, is part of the version).",
                                    versioned=False)
    export_dir: str | None = option(None, "Also copy the trained model here (not part of the version).",
                                    versioned=False)
    # learning-rate schedules, the symmetric loss, prompt-free/last-token pooling, streaming
    lr_scheduler: Literal["linear", "cosine", "cosine_with_restarts", "constant_with_warmup"] = option(
        "linear", "Learning-rate schedule after warmup: linear decay, cosine, cosine_with_restarts, constant_with_warmup.")
    warmup_steps: int = option(0, "Warmup optimizer steps; when > 0 it wins over warmup_ratio.")
    lr_cycles: int = option(1, "cosine_with_restarts: number of cosine cycles (each ends in a restart).")
    pool_prompt: bool | None = option(
        None, "Pool over the instruction prefix's tokens too; off (--no-pool-prompt): over the text only, as KURE "
              "(unset: as the model saved it).")
    padding_side: Literal["auto", "left", "right"] = option(
        "auto", "Tokenizer padding side; auto: left with lasttoken pooling (decoder models), else the tokenizer's own.")
    stream: bool = option(False, "Read the pairs file lazily on every pass (files larger than memory; "
                                 "a 10,000-row shuffle window instead of a full shuffle).")
    # experiment tracking and several eval sets
    report_to: list[str] = option(
        ["tensorboard"], "Trackers, comma-separated: tensorboard, mlflow (<data-dir>/.mlflow unless "
                         "MLFLOW_TRACKING_URI is set), wandb (offline without an account), or none "
                         "(not part of the version).", versioned=False)
    experiment: str = option("pipe", "MLflow experiment / wandb project the runs go to (not part of the version).",
                             versioned=False)
    eval_data: list[str] = option(
        [], "More eval sets scored during training, comma-separated [NAME=]REF[#SPLIT]: data artifacts or BEIR "
            "directories (corpus.jsonl, queries.jsonl, qrels/*.tsv); their mean metric picks the best checkpoint "
            "and drives early stopping (their data, not the spelling, is part of the version).", versioned=False)
    eval_with_dev: bool = option(True, "With eval_data: count the training data's own dev split among the sets averaged.")
    with_dev: bool = option(False, "Refit: train on the train and dev splits together (once the schedule was chosen "
                                   "on dev); nothing is left to evaluate on, so the last step's model is kept.")
    params: dict[str, Any] = option({}, "Each loss's own settings, by loss name ([train.gist] …).", cli=False)

    def validate(self) -> None:
        """Reject values that cannot train, naming the field."""
        entry = self.loss_entry()  # an unknown loss is a config error naming the known ones
        if entry.needs_scores and self.stream:
            raise ConfigError(f"field 'stream': the {self.loss} loss reads the rows' scores, which streaming does not carry",
                              hint="drop --stream")
        positive = ("epochs", "batch_size", "grad_accum_steps", "lora_r", "lora_alpha")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}': must be >= 1, got {getattr(self, name)}")
        non_negative = ("max_steps", "min_steps", "steps_per_epoch", "max_length", "query_max_length", "passage_max_length",
                        "max_negatives", "pad_to_multiple_of", "num_workers", "eval_steps", "patience")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ConfigError(f"field '{name}': must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"field 'lr': must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"field 'warmup_ratio': must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"field 'lora_dropout': must be in [0, 1), got {self.lora_dropout}")
        if self.temperature is not None and self.temperature <= 0:
            raise ConfigError(f"field 'temperature': must be > 0, got {self.temperature}")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"field 'keep_checkpoints': must be >= 1, got {self.keep_checkpoints}")
        device = self.device
        if not (device in ("auto", "cpu", "mps", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ConfigError(f"field 'device': {device!r} is not auto, cpu, cuda, cuda:N or mps")
        if self.optimizer != "auto":
            from transformers.training_args import OptimizerNames

            known = [o.value for o in OptimizerNames]
            if self.optimizer not in known:
                raise ConfigError(f"field 'optimizer': {self.optimizer!r} is not an optimizer transformers knows",
                                  hint="e.g. auto, adamw_torch_fused, adamw_torch, adafactor, sgd")
        if self.with_dev and self.stream:
            raise ConfigError("field 'with_dev': cannot be combined with stream (the dev rows are added in memory)",
                              hint="drop --stream, or compose with the dev rows in the train split")
        if self.qlora and not self.lora:
            self.lora = True  # QLoRA is LoRA on a 4-bit base
        self._validate_part_a()
        self._validate_part_b()

    def _validate_part_a(self) -> None:
        """Schedules."""
        if self.warmup_steps < 0:
            raise ConfigError(f"field 'warmup_steps': must be >= 0, got {self.warmup_steps}")
        if self.lr_cycles < 1:
            raise ConfigError(f"field 'lr_cycles': must be >= 1, got {self.lr_cycles}")

    def _validate_part_b(self) -> None:
        """Trackers: known names, `none` alone, the package installed."""
        from pipe_embed.training.tracking import check_installed, normalize_report_to

        self.report_to = normalize_report_to(self.report_to)
        check_installed([t for t in self.report_to if t != "tensorboard"])  # TensorBoard is optional, as before

    def loss_entry(self) -> Loss:
        """The chosen loss's registry entry."""
        return LOSSES.get(self.loss)

    def loss_params(self) -> Any:
        """The chosen loss's settings, typed (None for a loss without any; defaults where none were given)."""
        entry = self.loss_entry()
        return None if entry.params is None else params_of(self, entry.params)

    def resolved(self) -> TrainConfig:
        """The config as a run records and versions it: only the chosen loss's settings."""
        return keep_sections(self, [self.loss])


@dataclass
class EvalConfig:
    """How `pipe eval` scores a model: term -> definition retrieval over the whole corpus."""

    split: Literal["auto", "test", "dev"] = option(
        "auto", "Held-out split whose anchors are the queries: auto = test when the data has one, else dev.")
    reverse: bool = option(False, "Also score the reverse direction (definition -> term).")
    batch_size: int = option(64, "Texts per encoding batch (not part of the version).", versioned=False)
    query_prompt: str | None = option(None, "Query prefix (unset: the model's saved 'query' prompt).")
    passage_prompt: str | None = option(None, "Passage prefix (unset: the model's saved 'document' prompt).")
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
    trust_remote_code: bool = option(False, "Run model code shipped with the model.")
    backend: Literal["auto", "torch", "openvino", "onnx"] = option(
        "auto", "Encoding backend, as for mine: auto = the fastest installed CPU backend whose vectors match torch's "
        "(min cosine >= 0.9999), else torch (not part of the version: metrics agree to 1e-3).", versioned=False)

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"field 'batch_size': must be >= 1, got {self.batch_size}")


# -- the seed trainers' config.json ---------------------------------------------------------------

# seed key -> TrainConfig field (None: accepted and ignored, with the reason in SEED_IGNORED).
SEED_FIELDS: dict[str, str | None] = {
    "model_id": "model",
    "tokenizer_id": "tokenizer",
    "hf.trust_remote_code": "trust_remote_code",
    "hf.local_files_only": "local_files_only",
    "device.device": "device",
    "device.dtype": "precision",
    "train.batch_size": "batch_size",
    "train.epochs": "epochs",
    "train.max_length": "max_length",
    "train.grad_accum_steps": "grad_accum_steps",
    "train.pad_to_multiple_of": "pad_to_multiple_of",
    "train.fp16": "precision",
    "train.grad_checkpointing": "grad_checkpointing",
    "train.num_workers": "num_workers",
    "train.steps_per_epoch": "steps_per_epoch",
    "optim.name": "optimizer",
    "optim.lr": "lr",
    "optim.weight_decay": "weight_decay",
    "optim.warmup_ratio": "warmup_ratio",
    "data.pairs_path": "pairs_path",
    "data.stream": "stream",
    "output.save_dir": "export_dir",
    "output.save_name": "export_dir",
    "output.save_metrics": None,
}
SEED_IGNORED = {
    "output.save_metrics": "metrics.json is always written into the artifact",
}
SEED_SECTIONS = ("hf", "device", "train", "optim", "data", "output")
_OPTIMIZER_ALIASES = {"adamw": "auto", "adam": "auto"}  # the seed trainers' AdamW: transformers' default


def is_seed_config(data: dict[str, Any]) -> bool:
    """Whether a parsed config file uses the seed trainers' layout."""
    if "model_id" in data or "tokenizer_id" in data:
        return True
    seed_only = {"hf", "device", "optim", "data", "output"}
    if any(isinstance(data.get(k), dict) for k in seed_only):
        return True
    train = data.get("train")
    return isinstance(train, dict) and "fp16" in train


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SEED_SECTIONS and isinstance(value, dict):
            for sub, sub_value in value.items():
                flat[f"{key}.{sub}"] = sub_value
        else:
            flat[key] = value
    return flat


def seed_to_values(data: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Map a seed-layout config to TrainConfig values; a bad key or value names the seed field."""
    hints = get_type_hints(TrainConfig)
    flat = _flatten(data)
    unknown = [k for k in flat if k not in SEED_FIELDS]
    if unknown:
        raise ConfigError(f"{where}unknown field '{unknown[0]}'",
                          hint=f"the seed layout knows: {', '.join(SEED_FIELDS)}")
    values: dict[str, Any] = {}
    for key, value in flat.items():
        target = SEED_FIELDS[key]
        if target is None or value is None:
            continue
        if key == "train.fp16":
            if _coerce(value, bool, key, where):
                values["precision"] = "fp16"
            continue
        if key == "device.dtype":
            try:
                values.setdefault("precision", precision_of_dtype(value, key))
            except ConfigError as exc:
                raise ConfigError(f"{where}{exc.message}") from None
            continue
        if key == "optim.name":
            text = _coerce(value, str, key, where).lower()
            values["optimizer"] = _OPTIMIZER_ALIASES.get(text, text)
            continue
        if key in ("output.save_dir", "output.save_name"):
            continue  # combined below
        values[target] = _coerce(value, hints[target], key, where)
    save_dir, save_name = flat.get("output.save_dir"), flat.get("output.save_name")
    if save_dir is not None or save_name is not None:
        base = Path(_coerce(save_dir, str, "output.save_dir", where)) if save_dir is not None else Path(".")
        name = _coerce(save_name, str, "output.save_name", where) if save_name is not None else ""
        values["export_dir"] = str(base / name) if name else str(base)
    # A seed-file value that fails TrainConfig's own checks still names the seed field.
    reverse: dict[str, str] = {}  # field -> the seed key that set it
    for seed_key, field in SEED_FIELDS.items():
        if field is not None and seed_key in flat:
            reverse.setdefault(field, seed_key)
    try:
        build_config(TrainConfig, values, where)
    except ConfigError as exc:
        message = exc.message
        for field, seed_key in reverse.items():
            message = message.replace(f"field '{field}'", f"field '{seed_key}'")
        raise ConfigError(message, hint=exc.hint) from None
    return values


def load_train_config(file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Resolve TrainConfig: defaults < file (ours or the seed layout) < flags (None = not given)."""
    if file is not None:
        data = read_config_file(file)
        if is_seed_config(data):
            values = seed_to_values(data, f"{file}: ")
            for key, value in (overrides or {}).items():
                if value is not None:
                    values[key] = value
            return build_config(TrainConfig, values, "")
        table_value = data.get("train")
        own = table_value if isinstance(table_value, dict) else data
        if "dtype" in own:
            table = "[train] " if own is not data else ""
            new = DTYPE_NAMES.get(str(own["dtype"]).lower().removeprefix("torch."), "auto")
            raise ConfigError(f"{file}: {table}field 'dtype' is now 'precision'",
                              hint=f"write precision = \"{new}\" (one of {', '.join(PRECISIONS)})")
    return load_config(TrainConfig, "train", file, overrides)


def load_eval_config(file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> EvalConfig:
    """Resolve EvalConfig from defaults, an `[eval]` table and flags."""
    if file is not None and is_seed_config(read_config_file(file)):
        file = None  # a seed training config says nothing about evaluation
    return load_config(EvalConfig, "eval", file, overrides)


__all__ = ["TrainConfig", "EvalConfig", "load_train_config", "load_eval_config", "seed_to_values",
           "is_seed_config", "LOSSES", "POOLINGS", "METRICS", "PRECISIONS"]
