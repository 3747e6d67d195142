"""Experiment: fixed mined negatives vs a fresh draw from a mined pool every epoch (Tevatron's sampling).

On small glossaries the budget of >= 100 optimizer steps means 5-13 epochs, so a row's 3 fixed hard
negatives are met again every epoch; drawing them each epoch from the anchor's mined pool shows the model
more of the corpus. Mining as the plain mined recipe (the base model, candidates = the training pairs'
positives, ranks below 30, relative margin 0.05); `top3` keeps the 3 best every epoch, `poolN` draws 3 of
the N best each epoch (seeded); rows short of negatives are filled with other anchors' positives (pipe's
`pad_negatives = random`). Same budget, seed, sampler and MNRL as quality_big_batch.py's batch-16 side
(whose values are the in-batch reference; `inbatch` runs it here, as the same concatenated passes).
`relNN` keeps only candidates whose cosine to the positive definition is at least 0.NN: negatives on the
positive's topic, not texts the base model merely confuses with the term's surface (padded as above). One JSON line per glossary and seed in
benchmarks/results/quality.negative_pool.jsonl.

    python benchmarks/quality_negative_pool.py --glossaries slang,wordnet-300 --seeds 0,1,2
    python benchmarks/quality_negative_pool.py --glossaries slang,wordnet-300 --variants rel40
    python benchmarks/quality_negative_pool.py --glossaries chess --variants rel40,top3,inbatch

A filler is never the row's own positive, but may be another definition of the same term (a term with
several senses): at most a few rows in a run, the same for every mined variant.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from quality_experiment import budget_epochs, parser, record, splits, train_and_score
from quality_recipes import ST_MINE, base_model

NEGATIVES = 3


def mine_pools(model, pairs: list[tuple[str, str]], depth: int, related: float | None = None) -> list[list[str]]:
    """Each pair's best `depth` candidates among the other pairs' positives (ranks < 30, relative margin 0.05);
    with `related`, only candidates whose cosine to the pair's positive is at least that."""
    import numpy as np

    docs = sorted({d for _, d in pairs})
    index = {d: i for i, d in enumerate(docs)}
    doc_vectors = model.encode(docs, normalize_embeddings=True, batch_size=64)
    anchors = sorted({a for a, _ in pairs})
    anchor_vectors = model.encode(anchors, normalize_embeddings=True, batch_size=64)
    scores = dict(zip(anchors, anchor_vectors @ doc_vectors.T))
    positives: dict[str, set[int]] = {}
    for a, d in pairs:
        positives.setdefault(a, set()).add(index[d])
    pools = []
    for a, d in pairs:
        row = scores[a]
        limit = (1 - ST_MINE["relative_margin"]) * row[index[d]]
        ranked = [j for j in np.argsort(-row) if j not in positives[a]][: ST_MINE["range_max"]]
        kept = [j for j in ranked if row[j] < limit]
        if related is not None:
            kept = [j for j in kept if float(doc_vectors[j] @ doc_vectors[index[d]]) >= related]
        pools.append([docs[j] for j in kept][:depth])
    return pools


def epoch_rows(pairs: list[tuple[str, str]], pools: list[list[str]], epochs: int, draw: bool, seed: int):
    """Every epoch's rows (anchor, positive, negative_1..3), concatenated: drawn from the pool or its top 3."""
    from datasets import Dataset

    rng = random.Random(seed)
    columns: dict[str, list[str]] = {"anchor": [], "positive": [], **{f"negative_{k + 1}": [] for k in range(NEGATIVES)}}
    all_docs = [d for _, d in pairs]
    for _ in range(epochs):
        for (a, d), pool in zip(pairs, pools):
            chosen = rng.sample(pool, min(NEGATIVES, len(pool))) if draw else pool[:NEGATIVES]
            while len(chosen) < NEGATIVES:
                filler = rng.choice(all_docs)
                if filler != d and filler not in chosen:
                    chosen.append(filler)
            columns["anchor"].append(a)
            columns["positive"].append(d)
            for k, text in enumerate(chosen):
                columns[f"negative_{k + 1}"].append(text)
    return Dataset.from_dict(columns)


def main() -> None:
    args_parser = parser(__doc__, "quality.negative_pool.jsonl")
    args_parser.add_argument("--variants", default="top3,pool10")
    args = args_parser.parse_args()
    import torch

    torch.set_num_threads(1)
    for glossary, seed, terms, held_out in splits(args.glossaries, args.seeds):
        pairs = [(t.term, d) for t in terms for d in t.definitions]
        epochs = budget_epochs(len(pairs))
        result, steps, pool_sizes, start = {}, {}, {}, time.time()
        for variant in args.variants.split(","):
            model = base_model()
            if variant == "inbatch":
                from datasets import Dataset

                dataset = Dataset.from_dict({"anchor": [a for a, _ in pairs] * epochs,
                                             "positive": [d for _, d in pairs] * epochs})
                steps[variant], result[variant] = train_and_score(model, dataset, glossary, held_out, epochs=1)
                continue
            related = None
            if variant.startswith("rel"):  # relNN: top 3 of the candidates with cosine >= 0.NN to the positive
                depth, related = NEGATIVES, float("0." + variant.removeprefix("rel"))
            else:
                depth = NEGATIVES if variant == "top3" else int(variant.removeprefix("pool"))
            pools = mine_pools(model, pairs, depth, related)
            pool_sizes[variant] = round(sum(map(len, pools)) / len(pools), 2)
            dataset = epoch_rows(pairs, pools, epochs, draw=variant != "top3", seed=42)
            steps[variant], result[variant] = train_and_score(model, dataset, glossary, held_out, epochs=1)
        record(args.out, {"glossary": glossary.name, "seed": seed, "epochs": epochs, "rows": len(pairs),
                          "steps": steps, "mean_pool": pool_sizes, "mrr@10": result,
                          "wall_s": round(time.time() - start)})


if __name__ == "__main__":
    main()
