"""Training throughput: `pipe train` (run_train) against a bare SentenceTransformerTrainer, same settings.

Both train all-MiniLM-L6-v2 on the same rows (chess glossary fixture, 3 base-model-mined negatives per
anchor, padded where short) with MNRL, the no-duplicates batch sampler, the same batch size, steps,
max length, learning rate and seed, no dev evaluation, and a checkpoint at the end. The figure is the
trainer's own samples/s (steps x batch / time inside `train()`); model loading and data preparation
are reported separately as end-to-end wall time. On a shared machine other processes make single runs
noisy (the same run can take twice as long), so runs alternate (bare, pipe, bare, pipe …) and the
ratio uses the median optimizer-step time over all runs of each side (timed by the same tiny callback
in both), next to the best samples/s of each.

    python benchmarks/bench_train.py --steps 20 --batch-size 16 --repeats 1
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipe_embed.pipeline.core.models import load_model  # noqa: E402
from pipe_embed.pipeline.core.pairs import read_pairs  # noqa: E402
from pipe_embed.pipeline.core.store import Store  # noqa: E402
from pipe_embed.training.config import TrainConfig  # noqa: E402
from pipe_embed.training.data import build_rows, to_dataset  # noqa: E402
from pipe_embed.training.train import run_train  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from tests.training.chess import chess_compose, mine_with_model  # noqa: E402

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


def pipe_run(store: Store, pairs_path: Path, args: argparse.Namespace, run: int) -> dict:
    """`pipe train` on the same rows (a pairs file: no dev split, so no evaluation either)."""
    start = time.perf_counter()
    config = TrainConfig(pairs_path=str(pairs_path), batch_size=args.batch_size, max_steps=args.steps,
                         lr=args.lr, max_length=args.max_length, seed=args.seed, device="cpu",
                         eval_steps=args.steps, keep_checkpoints=1, export_dir=None)
    # `force` keeps every repeat a real training run instead of a cache hit.
    timer = StepTimer()
    artifact = run_train(store, config, force=run > 0, callbacks=[timer]).artifact
    train = artifact.metrics["train"]
    return {"samples_per_second": train["samples_per_second"], "train_runtime_s": train["runtime_s"],
            "wall_s": time.perf_counter() - start, "step_s": [round(t, 3) for t in timer.times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train.json")
    args = parser.parse_args()

    import torch

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


if __name__ == "__main__":
    main()
