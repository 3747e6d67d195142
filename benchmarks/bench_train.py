"""Training throughput: `pipe train` against a bare SentenceTransformerTrainer; f32 against bf16 autocast.

Mode `throughput` (the default):
Both train all-MiniLM-L6-v2 on the same rows (chess glossary fixture, 3 base-model-mined negatives per
anchor, padded where short) with MNRL, the no-duplicates batch sampler, the same batch size, steps,
max length, learning rate and seed, no dev evaluation, and a checkpoint at the end. The figure is the
trainer's own samples/s (steps x batch / time inside `train()`); model loading and data preparation
are reported separately as end-to-end wall time. On a shared machine other processes make single runs
noisy (the same run can take twice as long), so runs alternate (bare, pipe, bare, pipe …) and the
ratio uses the median optimizer-step time over all runs of each side (timed by the same tiny callback
in both), next to the best samples/s of each.

    python benchmarks/bench_train.py --steps 20 --batch-size 16 --repeats 1

Mode `precision`: seconds per optimizer step of a default-shaped `pipe train` run (MNRL at temperature
0.05, batch 16, 3 negatives per row, the no-duplicates sampler, lr 5e-5, 10% warmup, weight decay 0.01,
the model's max length) in f32 and in bf16 autocast, next to a bare SentenceTransformerTrainer with
bf16=True and its defaults, all on the same synthetic glossary rows. It needs only torch,
transformers and sentence-transformers (with the accelerate and datasets its trainer needs; no pipe
install, no download): pipe's trainer settings are
spelt out here, and `--model random-minilm` is a randomly initialised BertModel of all-MiniLM-L6-v2's
shape with a WordPiece vocab made from the rows' words, so a step costs what the real model's does.
The result names the CPU and its bf16 flags, and whether autocast really ran in bf16. Runs alternate
(f32, bf16, bare, f32 …); the first round pays for kernel creation that later ones reuse, so it is left
out when there are two or more.

    python benchmarks/bench_train.py --mode precision --model random-minilm --steps 20 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transformers import TrainerCallback  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "wikipedia" / "glossary_of_chess.html"


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (the same callback in both runs)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def bare_run(pairs_path: Path, args: argparse.Namespace, out: Path) -> dict:
    """A plain SentenceTransformerTrainer script with the same settings as pipe's run."""
    import transformers
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    from pipe_embed.pipeline.core.models import load_model
    from pipe_embed.pipeline.core.pairs import read_pairs
    from pipe_embed.training.data import build_rows, to_dataset

    start = time.perf_counter()
    transformers.set_seed(args.seed)
    model = load_model(None, device="cpu")
    model.max_seq_length = args.max_length
    dataset = to_dataset(build_rows(read_pairs(pairs_path), seed=args.seed))
    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(out), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, warmup_ratio=0.1, weight_decay=0.01, seed=args.seed, data_seed=args.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES, use_cpu=True, logging_steps=1, report_to="none",
        disable_tqdm=True, save_strategy="steps", save_steps=args.steps)
    timer = StepTimer()
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(model, scale=20.0), callbacks=[timer])
    output = trainer.train()
    model.save(str(out / "model"), create_model_card=False)
    return {"samples_per_second": output.metrics["train_samples_per_second"],
            "train_runtime_s": output.metrics["train_runtime"], "wall_s": time.perf_counter() - start,
            "step_s": [round(t, 3) for t in timer.times]}


def pipe_run(store: Any, pairs_path: Path, args: argparse.Namespace, run: int) -> dict:
    """`pipe train` on the same rows (a pairs file: no dev split, so no evaluation either)."""
    from pipe_embed.training.config import TrainConfig
    from pipe_embed.training.train import run_train

    start = time.perf_counter()
    config = TrainConfig(pairs_path=str(pairs_path), batch_size=args.batch_size, max_steps=args.steps,
                         lr=args.lr, max_length=args.max_length, seed=args.seed, device="cpu",
                         eval_steps=args.steps, keep_checkpoints=1, export_dir=None, precision="f32")
    # `force` keeps every repeat a real training run instead of a cache hit.
    timer = StepTimer()
    artifact = run_train(store, config, force=run > 0, callbacks=[timer]).artifact
    train = artifact.metrics["train"]
    return {"samples_per_second": train["samples_per_second"], "train_runtime_s": train["runtime_s"],
            "wall_s": time.perf_counter() - start, "step_s": [round(t, 3) for t in timer.times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("throughput", "precision"), default="throughput")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=None,
                        help="token limit (throughput: 64; precision: the model's own, as pipe's default)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", default="random-minilm",
                        help="precision mode: random-minilm (no download) or a model id/path")
    parser.add_argument("--skip-steps", type=int, default=2, help="precision mode: first steps left out of the timing")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.mode == "precision":
        precision_main(args)
    else:
        throughput_main(args)


def throughput_main(args: argparse.Namespace) -> None:
    """pipe train against a bare SentenceTransformerTrainer, both in f32 (see module doc)."""
    import torch

    from pipe_embed.pipeline.core.models import load_model
    from pipe_embed.pipeline.core.store import Store
    from tests.training.chess import chess_compose, mine_with_model

    args.max_length = args.max_length or 64
    args.out = args.out or ROOT / "benchmarks" / "results" / "train.json"

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data")
        compose = chess_compose(store, FIXTURE)
        miner = load_model(None, device="cpu")
        miner.max_seq_length = args.max_length
        mine = mine_with_model(store, compose, miner)
        pairs_path = mine.file("pairs.jsonl")
        runs: dict[str, list[dict]] = {"bare": [], "pipe": []}
        for run in range(args.repeats):
            runs["bare"].append(bare_run(pairs_path, args, Path(tmp) / f"bare-{run}"))
            print("bare", runs["bare"][-1], flush=True)
            runs["pipe"].append(pipe_run(store, pairs_path, args, run))
            print("pipe", runs["pipe"][-1], flush=True)

    def best(name: str, key: str) -> float:
        values = [r[key] for r in runs[name]]
        return max(values) if key == "samples_per_second" else min(values)

    def median_step(name: str) -> float:
        return statistics.median(t for r in runs[name] for t in r["step_s"])

    result = {
        "benchmark": "train throughput: pipe train vs bare SentenceTransformerTrainer",
        "model": "sentence-transformers/all-MiniLM-L6-v2 (bundled)",
        "data": "glossary_of_chess.html fixture, 3 mined negatives per anchor",
        "settings": {"steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length,
                     "negatives": 3, "loss": "mnrl", "sampler": "no_duplicates", "lr": args.lr,
                     "repeats": args.repeats, "device": "cpu", "torch_threads": torch.get_num_threads()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "load_avg_at_end": os.getloadavg()},
        "runs": runs,
        "bare_samples_per_second": best("bare", "samples_per_second"),
        "pipe_samples_per_second": best("pipe", "samples_per_second"),
        "bare_median_step_s": median_step("bare"),
        "pipe_median_step_s": median_step("pipe"),
    }
    # throughput ratio pipe/bare: bare step time over pipe step time (>1: pipe is faster)
    result["ratio"] = result["bare_median_step_s"] / result["pipe_median_step_s"]
    result["ratio_best_samples_per_second"] = result["pipe_samples_per_second"] / result["bare_samples_per_second"]
    result["target_ratio"] = 0.95
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("bare_samples_per_second", "pipe_samples_per_second",
                                             "bare_median_step_s", "pipe_median_step_s", "ratio",
                                             "ratio_best_samples_per_second")}))



# -- precision mode: f32 vs bf16 autocast vs a bare bf16 trainer; torch + transformers + sentence-transformers only --

MINILM_SHAPE = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536,
                "vocab_size": 30522, "max_position_embeddings": 512}
MINILM_MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2's sentence-transformers max_seq_length
CPU_FLAGS_OF_INTEREST = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")
WORDS = ("piece", "board", "move", "square", "king", "queen", "rook", "bishop", "knight", "pawn", "file", "rank",
         "attack", "defend", "capture", "check", "position", "opening", "endgame", "tactic", "material", "sacrifice",
         "advantage", "player", "side", "game", "rule", "line", "diagonal", "centre", "control", "threat", "escape",
         "legal", "illegal", "promotion", "castle", "exchange", "tempo", "structure", "weak", "strong", "open",
         "closed", "passed", "isolated", "doubled", "backward", "fianchetto", "gambit", "zugzwang", "stalemate")


def synthetic_rows(count: int, negatives: int, seed: int) -> dict[str, list[str]]:
    """Glossary-shaped rows (a 1-3 word term, a 25-40 word definition) with other rows' definitions as negatives."""
    import random

    rng = random.Random(seed)
    terms, definitions = [], []
    for i in range(count):
        terms.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))) + f" {i}")
        definitions.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 40))) + f" number {i}")
    columns = {"anchor": terms, "positive": definitions}
    for k in range(1, negatives + 1):
        columns[f"negative_{k}"] = [definitions[(i + 7 * k) % count] for i in range(count)]
    return columns


def wordpiece_vocab(texts: list[str]) -> dict[str, int]:
    """A deterministic WordPiece vocab: special tokens, every character and every word of `texts`."""
    words = sorted({w for t in texts for w in t.lower().split()})
    chars = sorted({c for w in words for c in w})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def random_minilm(directory: Path, texts: list[str], seed: int) -> Path:
    """A randomly initialised BERT of all-MiniLM-L6-v2's shape with mean pooling, saved as a sentence-transformer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:  # sentence-transformers 6 layout, else 3-5
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer

    raw = directory / "hf"
    raw.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(vocab=wordpiece_vocab(texts), do_lower_case=True)
    tokenizer.model_max_length = MINILM_SHAPE["max_position_embeddings"]
    tokenizer.save_pretrained(raw)
    torch.manual_seed(seed)
    BertModel(BertConfig(**MINILM_SHAPE)).save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=MINILM_MAX_SEQ_LENGTH)
    dim = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    model = SentenceTransformer(modules=[transformer, Pooling(dim(), pooling_mode="mean"), Normalize()], device="cpu")
    out = directory / "random-minilm"
    model.save(str(out))
    return out


def cpu_description() -> dict[str, Any]:
    """The CPU's model name and which bf16-related flags it has (Linux /proc/cpuinfo)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                name = value.strip()
            if key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model_name": name, "flags": {f: f in flags for f in CPU_FLAGS_OF_INTEREST},
            "native_bf16": any(f in flags for f in ("amx_bf16", "avx512_bf16"))}


class StepClock(StepTimer):
    """StepTimer plus the process CPU time of every step (less moved by other processes on a shared machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: list[float] = []
        self._cpu_start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._cpu_start = time.process_time()
        super().on_step_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        super().on_step_end(args, state, control, **kwargs)
        self.cpu.append(time.process_time() - self._cpu_start)


class AutocastProbe(TrainerCallback):
    """Records the output dtype of one linear layer during training forwards (bf16 iff autocast is on)."""

    def __init__(self) -> None:
        self.dtypes: set[str] = set()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch

        layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        layer.register_forward_hook(
            lambda _m, _i, out: self.dtypes.add(str(out.dtype)) if torch.is_grad_enabled() else None)


def precision_run(variant: str, model_path: str, columns: dict[str, list[str]], args: argparse.Namespace,
                  out: Path) -> dict[str, Any]:
    """One training run: `f32` and `bf16` with pipe's default trainer settings, `bare-bf16` with the library's."""
    import torch
    import transformers
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from transformers import PrinterCallback

    try:  # sentence-transformers 6 layout, else 3-5
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:
        from sentence_transformers.losses import MultipleNegativesRankingLoss
        from sentence_transformers.training_args import BatchSamplers

    transformers.set_seed(args.seed)
    model = SentenceTransformer(model_path, device="cpu")
    if args.max_length:
        model.max_seq_length = args.max_length
    common = {"output_dir": str(out), "max_steps": args.steps, "per_device_train_batch_size": args.batch_size,
              "use_cpu": True, "report_to": "none", "disable_tqdm": True, "save_strategy": "no", "logging_steps": 1}
    if variant == "bare-bf16":
        training_args = SentenceTransformerTrainingArguments(**common, bf16=True)
        loss = MultipleNegativesRankingLoss(model)
    else:  # what `pipe train` passes by default (training.train.training_arguments), minus eval/checkpoints
        # transformers 5 takes the warmup share as a float warmup_steps (as training.schedules passes it)
        warmup = {"warmup_steps": 0.1} if int(transformers.__version__.split(".")[0]) >= 5 else {"warmup_ratio": 0.1}
        training_args = SentenceTransformerTrainingArguments(
            **common, **warmup, bf16=variant == "bf16", learning_rate=args.lr, weight_decay=0.01,
            lr_scheduler_type="linear", seed=args.seed, data_seed=args.seed,
            batch_sampler=BatchSamplers.NO_DUPLICATES, logging_nan_inf_filter=False)
        loss = MultipleNegativesRankingLoss(model, scale=1.0 / 0.05)
    timer, probe = StepClock(), AutocastProbe()
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=Dataset.from_dict(columns),
                                         loss=loss, callbacks=[timer, probe])
    trainer.remove_callback(PrinterCallback)
    output = trainer.train()
    timed = timer.times[args.skip_steps:] or timer.times
    cpu = timer.cpu[args.skip_steps:] or timer.cpu
    return {"median_step_s": round(statistics.median(timed), 4), "median_step_cpu_s": round(statistics.median(cpu), 4),
            "step_s": [round(t, 4) for t in timer.times],
            "train_loss": output.training_loss, "autocast_dtypes": sorted(probe.dtypes),
            "weights_dtype": str(next(model.parameters()).dtype), "torch_threads": torch.get_num_threads()}


def precision_main(args: argparse.Namespace) -> None:
    """f32 vs bf16 vs bare bf16, alternating, written to benchmarks/results/train_precision.json."""
    import sentence_transformers
    import torch
    import transformers

    negatives = 3
    columns = synthetic_rows(max(args.batch_size * 8, 128), negatives, args.seed)
    variants = ("f32", "bf16", "bare-bf16")
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "random-minilm":
            model_path = str(random_minilm(Path(tmp), [*columns["anchor"], *columns["positive"]], args.seed))
            described = "random-minilm: random BertModel, all-MiniLM-L6-v2's shape, WordPiece vocab of the rows' words"
        else:
            model_path, described = args.model, args.model
        for repeat in range(args.repeats):
            for variant in variants:
                runs[variant].append(precision_run(variant, model_path, columns, args,
                                                   Path(tmp) / f"{variant}-{repeat}"))
                print(variant, {k: v for k, v in runs[variant][-1].items() if k != "step_s"}, flush=True)

    # The first round also pays one-time costs that later runs in the process reuse (kernels created per new
    # batch shape and dtype): with --repeats 2 or more, it is left out.
    measured = {v: runs[v][1:] or runs[v] for v in variants}
    median = {v: statistics.median(r["median_step_s"] for r in measured[v]) for v in variants}
    median_cpu = {v: statistics.median(r["median_step_cpu_s"] for r in measured[v]) for v in variants}
    result = {
        "benchmark": "train s/step: f32 vs bf16 autocast (pipe's default trainer settings) vs a bare bf16 trainer",
        "model": described,
        "data": f"{len(columns['anchor'])} synthetic glossary rows, {negatives} negatives per row",
        "settings": {"steps": args.steps, "skipped_steps": args.skip_steps, "batch_size": args.batch_size,
                     "max_length": args.max_length or "model's own", "lr": args.lr, "repeats": args.repeats,
                     "first_round_left_out": args.repeats > 1,
                     "device": "cpu", "torch_threads": torch.get_num_threads()},
        "cpu": cpu_description(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "sentence_transformers": sentence_transformers.__version__, "load_avg_at_end": os.getloadavg()},
        "runs": runs,
        "median_step_s": median,
        "median_step_cpu_s": median_cpu,
        "bf16_speedup_over_f32": round(median["f32"] / median["bf16"], 3),
        "bf16_speedup_over_f32_cpu_time": round(median_cpu["f32"] / median_cpu["bf16"], 3),
        "bare_bf16_over_bf16_step_time": round(median["bare-bf16"] / median["bf16"], 3),
    }
    out = args.out or ROOT / "benchmarks" / "results" / "train_precision.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("median_step_s", "median_step_cpu_s", "bf16_speedup_over_f32",
                                             "bf16_speedup_over_f32_cpu_time", "bare_bf16_over_bf16_step_time",
                                             "cpu")}))


if __name__ == "__main__":
    main()
