"""The recipes the quality benchmark compares, each turning a split's training terms into a model.

base (no training), the plain sentence-transformers scripts a user would write (in-batch MNRL, and
`mine_hard_negatives` + MNRL), and pipe's `compose` + `train` / `compose` + `iterate` through the
library functions, each in its own data directory. pipe is handed only the training terms (a CSV, as
a user would) and may split its own dev set from them; a `[bench]` table in a pipe config file holds
benchmark-side options (`mine_corpus = "all"`: every definition of the glossary, unlabelled, as extra
mining candidates; `min_steps = N`: epochs raised so training takes at least N optimizer steps;
`directions = ["query_to_doc", "doc_to_query"]`: MNRL's directions, patched into pipe's loss builder,
to measure the symmetric loss before pipe has a setting for it).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quality_data import Glossary, Term, write_glossary_csv

from pipe_embed.pipeline.core.models import load_model

MAX_LENGTH = 96  # token limit of every text, in every recipe, in training and scoring alike
ST_SETTINGS = {"epochs": 3, "batch_size": 16, "lr": 5e-5, "loss": "MultipleNegativesRankingLoss (scale 20)",
               "sampler": "no_duplicates", "seed": "the run's trainer seed", "max_length": MAX_LENGTH,
               "bf16": "where the CPU has native bf16, as pipe's --precision auto (measured equal to f32 within noise)"}
ST_MINE = {"range_max": 30, "num_negatives": 3, "relative_margin": 0.05, "output_format": "n-tuple",
           "corpus": "the training pairs' positives (mine_hard_negatives' default)"}
STAGES = ("compose", "mine", "train", "iterate", "eval")


@dataclass
class PipeVariant:
    """pipe's configs for one named variant: stage overrides from a TOML file, plus `[bench]` options."""

    name: str = "default"
    file: str | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> PipeVariant:
        """'NAME=FILE' (or a bare FILE, named after its stem)."""
        import tomllib

        name, _, path = spec.rpartition("=")
        path_obj = Path(path)
        tables = tomllib.loads(path_obj.read_text(encoding="utf-8"))
        unknown = [k for k in tables if k not in (*STAGES, "bench")]
        if unknown:
            raise SystemExit(f"{path}: unknown table [{unknown[0]}] (known: {', '.join((*STAGES, 'bench'))})")
        return cls(name or path_obj.stem, str(path_obj), tables)

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "overrides": self.tables}

    def bench(self, key: str, default: Any = None) -> Any:
        return self.tables.get("bench", {}).get(key, default)

    def configs(self) -> dict[str, Any]:
        """Resolved stage configs: pipe's defaults, the benchmark's fixed settings, then the file's tables."""
        from pipe_embed.mining.stage import MineConfig
        from pipe_embed.pipeline.compose.stage import ComposeConfig
        from pipe_embed.pipeline.core.config import build_config
        from pipe_embed.pipeline.orchestrate.iterate import IterateConfig
        from pipe_embed.training.config import EvalConfig, TrainConfig

        fixed = {"train": {"max_length": MAX_LENGTH, "device": "cpu"}, "eval": {"device": "cpu"}}
        classes = {"compose": ComposeConfig, "mine": MineConfig, "train": TrainConfig,
                   "iterate": IterateConfig, "eval": EvalConfig}
        return {stage: build_config(cls, {**fixed.get(stage, {}), **self.tables.get(stage, {})},
                                    f"{self.file}: [{stage}] ")
                for stage, cls in classes.items()}


def _st_dataset(terms: list[Term]) -> Any:
    from datasets import Dataset

    pairs = [(t.term, d) for t in terms for d in t.definitions]
    return Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})


def _st_train(model: Any, dataset: Any, out: Path, loss: Any = None, batch_size: int | None = None,
              epochs: int | None = None, lr: float | None = None, seed: int = 42) -> dict[str, Any]:
    """The plain script: SentenceTransformerTrainer, MNRL, 3 epochs, batch 16, lr 5e-5, no dev set, bf16 where
    native (an experiment may change the loss, batch size, epochs and learning rate)."""
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    from pipe_embed.training.precision import detect_precision

    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=epochs or ST_SETTINGS["epochs"],
        per_device_train_batch_size=batch_size or ST_SETTINGS["batch_size"], learning_rate=lr or ST_SETTINGS["lr"],
        seed=seed, bf16=detect_precision("auto", "cpu").bf16, batch_sampler=BatchSamplers.NO_DUPLICATES, use_cpu=True,
        report_to="none", save_strategy="no", logging_steps=10, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=loss or MultipleNegativesRankingLoss(model))
    output = trainer.train()
    return {"steps": trainer.state.global_step, "rows": len(dataset), "train_loss": output.training_loss}


def base_model() -> Any:
    model = load_model(None, device="cpu")
    model.max_seq_length = MAX_LENGTH
    return model


def st_inbatch(train: list[Term], work: Path, seed: int) -> tuple[Any, dict[str, Any]]:
    model = base_model()
    return model, _st_train(model, _st_dataset(train), work / "st", seed=seed)


def st_mined(train: list[Term], work: Path, seed: int) -> tuple[Any, dict[str, Any]]:
    from sentence_transformers.util import mine_hard_negatives

    model = base_model()
    dataset = mine_hard_negatives(_st_dataset(train), model, range_max=ST_MINE["range_max"],
                                  num_negatives=ST_MINE["num_negatives"],
                                  relative_margin=ST_MINE["relative_margin"], output_format="n-tuple",
                                  batch_size=64, verbose=False)
    info = _st_train(model, dataset, work / "st", seed=seed)
    info["rows_with_negatives"] = len(dataset)
    return model, info


def _pipe_compose(glossary: Glossary, train: list[Term], work: Path, variant: PipeVariant, seed: int
                  ) -> tuple[Any, Any, dict[str, Any]]:
    from pipe_embed.pipeline.compose.stage import run_compose
    from pipe_embed.pipeline.core.store import Store

    configs = variant.configs()
    configs["train"] = dataclasses.replace(configs["train"], seed=seed)
    store = Store(work / "data")
    compose = run_compose(store, configs["compose"], inputs=[write_glossary_csv(train, work / "glossary.csv")]).artifact
    if variant.bench("mine_corpus") == "all":  # every text of the retrieval corpus, as a user's RAG corpus
        path = work / "all_definitions.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in glossary.corpus.values()), encoding="utf-8")
        configs["mine"] = dataclasses.replace(configs["mine"], corpus=str(path))
    min_steps = variant.bench("min_steps")
    if min_steps:
        tcfg = configs["train"]
        anchors = compose.stats["splits"]["train"]
        per_epoch = max(1, math.ceil(anchors / (tcfg.batch_size * tcfg.grad_accum_steps)))
        configs["train"] = dataclasses.replace(tcfg, epochs=max(tcfg.epochs, math.ceil(min_steps / per_epoch)))
    return store, compose, configs


@contextmanager
def loss_directions(directions: list[str] | None) -> Iterator[None]:
    """While active, pipe's MNRL gets these `directions` (the symmetric loss is not a pipe setting yet)."""
    if not directions:
        yield
        return
    from pipe_embed.training import train as train_module

    original = train_module.build_loss

    def build_loss(config: Any, model: Any, device: str) -> Any:
        from sentence_transformers.sentence_transformer import losses

        if config.loss != "mnrl":
            return original(config, model, device)
        return losses.MultipleNegativesRankingLoss(model, scale=1.0 / (config.temperature or 0.05),
                                                   directions=tuple(directions))

    train_module.build_loss = build_loss
    try:
        yield
    finally:
        train_module.build_loss = original


def pipe_train(glossary: Glossary, train: list[Term], work: Path, variant: PipeVariant, seed: int
               ) -> tuple[Any, dict[str, Any]]:
    """`pipe compose --input train.csv` + `pipe train --from compose@latest`."""
    from pipe_embed.training.train import MODEL_DIR, run_train

    store, compose, configs = _pipe_compose(glossary, train, work, variant, seed)
    with loss_directions(variant.bench("directions")):
        artifact = run_train(store, configs["train"], compose).artifact
    info = {"splits": compose.stats["splits"], "epochs": configs["train"].epochs,
            "train": artifact.metrics.get("train"), "dev": artifact.metrics.get("dev"),
            "dev_base": artifact.metrics.get("dev_base")}
    return load_model(str(artifact.file(MODEL_DIR)), device="cpu"), info


def pipe_iterate(glossary: Glossary, train: list[Term], work: Path, variant: PipeVariant, seed: int
               ) -> tuple[Any, dict[str, Any]]:
    """`pipe compose --input train.csv` + `pipe iterate` (mine → train → eval rounds)."""
    from pipe_embed.pipeline.orchestrate.iterate import read_rounds, run_iterate

    store, compose, configs = _pipe_compose(glossary, train, work, variant, seed)
    with loss_directions(variant.bench("directions")):
        artifact = run_iterate(store, configs["iterate"], configs["mine"], configs["train"], configs["eval"],
                               from_ref=compose.ref).artifact
    rounds = read_rounds(artifact)
    info = {"splits": compose.stats["splits"], "epochs": configs["train"].epochs,
            "best_round": rounds["best_round"], "base_dev": rounds["base_dev"].get("mrr@10"),
            "rounds": [{"round": r["round"], "dev_mrr@10": r["dev"].get("mrr@10"),
                        "short_of_negatives": r.get("short_of_negatives")} for r in rounds["rounds"]]}
    return load_model(rounds["best_model"], device="cpu"), info


ST_RECIPES = {"base": None, "st_inbatch": st_inbatch, "st_mined": st_mined}
PIPE_RECIPES = {"pipe_train": pipe_train, "pipe_iterate": pipe_iterate}
