"""Experiment: a bigger in-batch pool at the same data passes: plain ST MNRL at batch 16 vs CachedMNRL at 64.

Both train on the same split's training terms for the same number of epochs: at least 3, raised until
batch 16 takes at least 100 optimizer steps (the budget of pipe's defaults), lr 5e-5, no-duplicates
sampler, seed 42; CachedMNRL runs mini-batches of 16, so memory stays at batch 16's. Scored like
bench_quality. One JSON line per glossary and seed in benchmarks/results/quality.big_batch.jsonl.

    python benchmarks/quality_big_batch.py --glossaries slang,wordnet-300 --seeds 0,1,2
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from quality_experiment import budget_epochs, parser, record, splits, train_and_score
from quality_recipes import _st_dataset, base_model


def main() -> None:
    args_parser = parser(__doc__, "quality.big_batch.jsonl")
    args_parser.add_argument("--batches", default="16,64")
    args = args_parser.parse_args()
    import torch
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
    )

    torch.set_num_threads(1)
    for glossary, seed, terms, held_out in splits(args.glossaries, args.seeds):
        dataset = _st_dataset(terms)
        epochs = budget_epochs(len(dataset))
        result, steps, start = {}, {}, time.time()
        for batch in (int(b) for b in args.batches.split(",")):
            model = base_model()
            loss = None if batch <= 16 else CachedMultipleNegativesRankingLoss(model, mini_batch_size=16)
            steps[batch], result[f"batch{batch}"] = train_and_score(model, dataset, glossary, held_out, loss=loss,
                                                                    batch_size=batch, epochs=epochs)
        record(args.out, {"glossary": glossary.name, "seed": seed, "epochs": epochs, "rows": len(dataset),
                          "steps": steps, "mrr@10": result, "wall_s": round(time.time() - start)})


if __name__ == "__main__":
    main()
