"""Experiment: a bigger in-batch pool at the same data passes: plain ST MNRL at batch 16 vs CachedMNRL at 64.

Both train on the same split's training terms for the same number of epochs: at least 3, raised until
batch 16 takes at least 100 optimizer steps (the budget of pipe's defaults), lr 5e-5, no-duplicates
sampler, seed 42; CachedMNRL runs mini-batches of 16, so memory stays at batch 16's. Scored like
bench_quality. One JSON line per glossary and seed in benchmarks/results/quality.big_batch.jsonl.

    python benchmarks/quality_big_batch.py --glossaries slang,wordnet-300 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from quality_data import load_glossary, split_terms  # noqa: E402
from quality_recipes import ST_SETTINGS, _st_dataset, base_model  # noqa: E402
from quality_score import score  # noqa: E402


def train(dataset, batch_size: int, epochs: int, out: Path):
    """The plain script with MNRL (batch 16) or CachedMNRL (bigger batches, mini-batches of 16)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    model = base_model()
    loss = MultipleNegativesRankingLoss(model) if batch_size <= 16 else \
        CachedMultipleNegativesRankingLoss(model, mini_batch_size=16)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        learning_rate=ST_SETTINGS["lr"], seed=ST_SETTINGS["seed"], batch_sampler=BatchSamplers.NO_DUPLICATES,
        use_cpu=True, report_to="none", save_strategy="no", logging_steps=10, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    trainer.train()
    return model, trainer.state.global_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glossaries", default="slang,wordnet-300")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batches", default="16,64")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "quality.big_batch.jsonl")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    for name in args.glossaries.split(","):
        glossary = load_glossary(name)
        for seed in (int(s) for s in args.seeds.split(",")):
            terms, held_out = split_terms(glossary, seed)
            dataset = _st_dataset(terms)
            epochs = max(3, math.ceil(100 / math.ceil(len(dataset) / 16)))
            result, steps, start = {}, {}, time.time()
            for batch in (int(b) for b in args.batches.split(",")):
                with tempfile.TemporaryDirectory() as tmp:
                    model, steps[batch] = train(dataset, batch, epochs, Path(tmp))
                result[f"batch{batch}"] = score(model, glossary, held_out)["mrr@10"]
            record = {"glossary": name, "seed": seed, "epochs": epochs, "rows": len(dataset), "steps": steps,
                      "mrr@10": result, "wall_s": round(time.time() - start)}
            print(json.dumps(record), flush=True)
            with args.out.open("a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
