"""Experiment: one training knob at a time (learning rate, MNRL scale, batch size) against the reference.

The reference is quality_big_batch.py's batch-16 side: plain ST MNRL (scale 20), batch 16, lr 5e-5,
no-duplicates sampler, seed 42, for at least 3 epochs raised until batch 16 takes 100 optimizer steps
(pipe's default budget). A variant `KEY=VALUE` changes one of `lr`, `scale`, `batch` (same epochs, so
batch 8 takes twice the steps); a `mined:` prefix trains on the plain mined top 3 negatives instead
(quality_negative_pool.py's `top3`: the base model, ranks < 30, relative margin 0.05, short rows padded).
One JSON line per glossary and seed in benchmarks/results/quality.hyperparameters.jsonl.

    python benchmarks/quality_hyperparameters.py --glossaries slang,wordnet-300 --variants ref,lr=1e-4,lr=2e-4
    python benchmarks/quality_hyperparameters.py --glossaries chess --variants mined:ref,mined:lr=1e-4
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
from quality_recipes import base_model

KNOBS = {"lr": float, "scale": float, "batch": int}


def parse_variant(spec: str) -> tuple[bool, dict[str, float | int]]:
    """'[mined:]ref' or '[mined:]KEY=VALUE' -> (mined?, the one changed knob, empty for the reference)."""
    mined = spec.startswith("mined:")
    knob = spec.removeprefix("mined:")
    if knob == "ref":
        return mined, {}
    key, _, value = knob.partition("=")
    if key not in KNOBS or not value:
        raise SystemExit(f"--variants: {spec!r} is not [mined:]ref or [mined:]KEY=VALUE with KEY in {', '.join(KNOBS)}")
    return mined, {key: KNOBS[key](value)}


def main() -> None:
    args_parser = parser(__doc__, "quality.hyperparameters.jsonl")
    args_parser.add_argument("--variants", default="ref,lr=1e-4,lr=2e-4,scale=10,batch=8")
    args = args_parser.parse_args()
    variants = {spec: parse_variant(spec) for spec in args.variants.split(",")}
    import torch
    from datasets import Dataset
    from quality_negative_pool import NEGATIVES, epoch_rows, mine_pools
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    torch.set_num_threads(1)
    for glossary, seed, terms, held_out in splits(args.glossaries, args.seeds):
        pairs = [(t.term, d) for t in terms for d in t.definitions]
        epochs = budget_epochs(len(pairs))
        inbatch = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [d for _, d in pairs]})
        mined_rows = None
        result, steps, start = {}, {}, time.time()
        for spec, (mined, knob) in variants.items():
            model = base_model()
            if mined and mined_rows is None:
                mined_rows = epoch_rows(pairs, mine_pools(model, pairs, NEGATIVES), 1, draw=False, seed=42)
            loss = MultipleNegativesRankingLoss(model, scale=knob["scale"]) if "scale" in knob else None
            steps[spec], result[spec] = train_and_score(model, mined_rows if mined else inbatch, glossary, held_out,
                                                        loss=loss, batch_size=knob.get("batch"), epochs=epochs,
                                                        lr=knob.get("lr"))
        record(args.out, {"glossary": glossary.name, "seed": seed, "epochs": epochs, "rows": len(pairs),
                          "steps": steps, "mrr@10": result, "wall_s": round(time.time() - start)})


if __name__ == "__main__":
    main()
