"""Experiment: does averaging weights help the plain recipes on bench_quality's glossaries and splits?

`wise`: WiSE-FT, the base model and the plain in-batch / mined fine-tunes interpolated at alpha 0.25,
0.5, 0.75, 1.0 (1.0 = the fine-tune). `soup`: the uniform average of the in-batch and the mined
fine-tune of the same base. `seeds`: the in-batch recipe at pipe's budget (>= 100 steps, as
quality_big_batch.py's batch-16 side; trainer seed 42 is its reference) trained again with trainer
seeds 43 and 44 (other data orders), and the uniform soups of the first 2 and all 3. Same training,
splits and scoring as bench_quality (its recipes and `score`); one JSON line per glossary and seed
in benchmarks/results/quality.weight_averaging.jsonl.

    python benchmarks/quality_weight_averaging.py soup --glossaries slang,wordnet-300 --seeds 0,1,2
    python benchmarks/quality_weight_averaging.py seeds --glossaries slang,wordnet-300 --seeds 0,1,2
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from quality_data import Glossary, Term
from quality_experiment import budget_epochs, parser, record, splits, train_and_score
from quality_recipes import _st_dataset, base_model, st_inbatch, st_mined
from quality_score import score

ALPHAS = (0.25, 0.5, 0.75, 1.0)
RECIPES = {"st_inbatch": st_inbatch, "st_mined": st_mined}
TRAINER_SEEDS = (42, 43, 44)


def mix(left: dict, right: dict, weight: float) -> dict:
    """(1 - weight) * left + weight * right for float tensors; integer buffers come from right."""
    return {k: (1 - weight) * left[k] + weight * right[k] if right[k].is_floating_point() else right[k] for k in right}


def uniform(states: list[dict]) -> dict:
    """The mean of several state dicts (integer buffers from the last)."""
    return {k: sum(s[k] for s in states) / len(states) if states[-1][k].is_floating_point() else states[-1][k]
            for k in states[-1]}


def seed_soups(glossary: Glossary, train: list[Term], held_out: list[Term]) -> dict[str, float]:
    """MRR@10 of the in-batch fine-tune at each trainer seed, and of the uniform soups of the first 2 and 3."""
    dataset = _st_dataset(train)
    epochs = budget_epochs(len(dataset))
    result, states = {}, []
    for trainer_seed in TRAINER_SEEDS:
        model = base_model()
        _, result[f"seed{trainer_seed}"] = train_and_score(model, dataset, glossary, held_out, epochs=epochs,
                                                            seed=trainer_seed)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for size in (2, 3):
        model.load_state_dict(uniform(states[:size]))
        result[f"soup{size}"] = score(model, glossary, held_out)["mrr@10"]
    return result


def main() -> None:
    args_parser = parser(__doc__, "quality.weight_averaging.jsonl")
    args_parser.add_argument("mode", choices=["wise", "soup", "seeds"])
    args = args_parser.parse_args()
    import torch

    torch.set_num_threads(1)
    for glossary, seed, train, held_out in splits(args.glossaries, args.seeds):
        start, tuned, result = time.time(), {}, {}
        if args.mode == "seeds":
            record(args.out, {"mode": args.mode, "glossary": glossary.name, "seed": seed,
                              "mrr@10": seed_soups(glossary, train, held_out), "wall_s": round(time.time() - start)})
            continue
        base = {k: v.clone() for k, v in base_model().state_dict().items()}
        for recipe, fn in RECIPES.items():
            with tempfile.TemporaryDirectory() as tmp:
                model, _ = fn(train, Path(tmp))
            tuned[recipe] = {k: v.clone() for k, v in model.state_dict().items()}
            if args.mode == "wise":
                for alpha in ALPHAS:
                    model.load_state_dict(mix(base, tuned[recipe], alpha))
                    result[f"{recipe}@{alpha}"] = score(model, glossary, held_out)["mrr@10"]
            else:
                result[recipe] = score(model, glossary, held_out)["mrr@10"]
        if args.mode == "soup":
            model.load_state_dict(uniform([tuned["st_inbatch"], tuned["st_mined"]]))
            result["soup"] = score(model, glossary, held_out)["mrr@10"]
        record(args.out, {"mode": args.mode, "glossary": glossary.name, "seed": seed, "mrr@10": result,
                          "wall_s": round(time.time() - start)})


if __name__ == "__main__":
    main()
