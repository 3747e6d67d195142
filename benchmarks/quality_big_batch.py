"""Experiment: a bigger in-batch pool at the same data passes: plain ST MNRL at batch 16 vs CachedMNRL at 64.

Both train on the same split's training terms for the same number of epochs: at least 3, raised until
batch 16 takes at least 100 optimizer steps (the budget of pipe's defaults), lr 5e-5, no-duplicates
sampler, seed 42; CachedMNRL runs mini-batches of 16, so memory stays at batch 16's. Scored like
bench_quality. One JSON line per glossary and seed in benchmarks/results/quality.big_batch.jsonl.

    python benchmarks/quality_big_batch.py --glossaries slang,wordnet-300 --seeds 0,1,2
"""

from __future__ import annotations

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

from quality_experiment import parser, record, splits
from quality_recipes import _st_dataset, _st_train, base_model
from quality_score import score


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
        epochs = max(3, math.ceil(100 / math.ceil(len(dataset) / 16)))
        result, steps, start = {}, {}, time.time()
        for batch in (int(b) for b in args.batches.split(",")):
            model = base_model()
            loss = None if batch <= 16 else CachedMultipleNegativesRankingLoss(model, mini_batch_size=16)
            with tempfile.TemporaryDirectory() as tmp:
                steps[batch] = _st_train(model, dataset, Path(tmp), loss=loss, batch_size=batch, epochs=epochs)["steps"]
            result[f"batch{batch}"] = score(model, glossary, held_out)["mrr@10"]
        record(args.out, {"glossary": glossary.name, "seed": seed, "epochs": epochs, "rows": len(dataset),
                          "steps": steps, "mrr@10": result, "wall_s": round(time.time() - start)})


if __name__ == "__main__":
    main()
