"""Experiment: GIST (in-batch negatives the frozen base model ranks above the positive are masked) vs plain MNRL.

Same splits, budget and seed as quality_big_batch.py's batch-16 side (at least 3 epochs, raised until
batch 16 takes >= 100 optimizer steps; lr 5e-5; no-duplicates sampler; seed 42), so its `batch16`
values are the MNRL reference. Variants: `gist` (in-batch, temperature 0.01, GISTEmbedLoss' own),
`gist_t05` (temperature 0.05, MNRL's scale 20), `gist_mined` (plus one `mine_hard_negatives` negative,
range 30, relative margin 0.05, as the plain mined recipe). One JSON line per glossary and seed in
benchmarks/results/quality.gist.jsonl.

    python benchmarks/quality_gist.py --glossaries slang,wordnet-300 --seeds 0,1,2
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
from quality_recipes import ST_MINE, _st_dataset, base_model


def main() -> None:
    args_parser = parser(__doc__, "quality.gist.jsonl")
    args_parser.add_argument("--variants", default="gist,gist_t05,gist_mined")
    args = args_parser.parse_args()
    import torch
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss
    from sentence_transformers.util import mine_hard_negatives

    torch.set_num_threads(1)
    for glossary, seed, terms, held_out in splits(args.glossaries, args.seeds):
        pairs = _st_dataset(terms)
        epochs = budget_epochs(len(pairs))
        result, steps, start = {}, {}, time.time()
        for variant in args.variants.split(","):
            model, guide = base_model(), base_model()
            guide.eval()
            dataset = pairs
            if variant == "gist_mined":
                dataset = mine_hard_negatives(pairs, guide, range_max=ST_MINE["range_max"], num_negatives=1,
                                              relative_margin=ST_MINE["relative_margin"], output_format="triplet",
                                              batch_size=64, verbose=False)
            loss = GISTEmbedLoss(model, guide, temperature=0.05 if variant == "gist_t05" else 0.01)
            steps[variant], result[variant] = train_and_score(model, dataset, glossary, held_out, loss=loss,
                                                              epochs=epochs)
        record(args.out, {"glossary": glossary.name, "seed": seed, "epochs": epochs, "rows": len(pairs),
                          "steps": steps, "mrr@10": result, "wall_s": round(time.time() - start)})


if __name__ == "__main__":
    main()
