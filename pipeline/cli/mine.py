"""`pipe mine`: hard negatives for the train split by BM25, dense FAISS or hybrid retrieval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pipe_embed.pipeline.cli.app import (
    ConfigFile,
    DataDir,
    Force,
    Quiet,
    Verbose,
    command,
    report,
    setup,
)
from pipe_embed.pipeline.core.config import load_config
from pipe_embed.pipeline.core.console import info


@command("mine", "Mine hard negatives (bm25, faiss or hybrid) with positive-aware false-negative filters.")
def mine(
    method: Annotated[str | None, typer.Option("--method", help="bm25, faiss (dense) or hybrid. (default: faiss)")] = None,
    from_ref: Annotated[str, typer.Option("--from", help="A compose artifact, or a mine artifact to re-mine.")] = "compose@latest",
    model: Annotated[str | None, typer.Option("--model", help="Embedding model id or directory (faiss/hybrid).")] = None,
    num_negatives: Annotated[int | None, typer.Option("--num-negatives", "-n", help="Negatives per anchor. (default: 3)")] = None,
    range_min: Annotated[int | None, typer.Option("--range-min", help="Skip this many top candidates. (default: 0)")] = None,
    range_max: Annotated[int | None, typer.Option("--range-max", help="Look no deeper than this rank. (default: 30)")] = None,
    sampling: Annotated[str | None, typer.Option("--sampling", help="top or random. (default: top)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of random sampling. (default: 42)")] = None,
    max_score: Annotated[float | None, typer.Option("--max-score", help="Drop candidates scoring above this.")] = None,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Drop candidates scoring below this.")] = None,
    margin: Annotated[float | None, typer.Option("--margin", help="Drop if negative + margin > positive.")] = None,
    relative_margin: Annotated[float | None, typer.Option(
        "--relative-margin", help="Drop if negative > (1 - m) x positive. (default: 0.05 dense, off bm25)")] = None,
    max_positive_similarity: Annotated[float | None, typer.Option(
        "--max-positive-similarity", help="Dense: drop candidates this similar to a positive.")] = None,
    cross_encoder: Annotated[str | None, typer.Option("--cross-encoder", help="Cross-encoder that vetoes false negatives.")] = None,
    index: Annotated[str | None, typer.Option("--index", help="flat, ivf or hnsw. (default: flat)")] = None,
    bm25_backend: Annotated[str | None, typer.Option("--bm25-backend", help="bm25s or rank_bm25. (default: bm25s)")] = None,
    corpus: Annotated[Path | None, typer.Option("--corpus", help="Extra candidate texts (JSONL with text, or one per line).")] = None,
    formats: Annotated[str | None, typer.Option("--format", help="Exports, comma-separated: flag, st-ntuple, st-triplet.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Encoding batch size. (default: 64)")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="torch or onnx. (default: torch)")] = None,
    shard: Annotated[int | None, typer.Option("--shard", help="Only encode shard i into the cache (no artifact).")] = None,
    num_shards: Annotated[int | None, typer.Option("--num-shards", help="Number of encoding shards.")] = None,
    data_dir: DataDir = Path("data"),
    config: ConfigFile = None,
    force: Force = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    from pipe_embed.mining.stage import MineConfig, run_mine, warm_cache
    from pipe_embed.pipeline.core.errors import ConfigError

    store = setup(data_dir, verbose, quiet)
    cfg = load_config(MineConfig, "mine", config, {
        "method": method, "model": model, "num_negatives": num_negatives, "range_min": range_min,
        "range_max": range_max, "sampling": sampling, "seed": seed, "max_score": max_score,
        "min_score": min_score, "margin": margin, "relative_margin": relative_margin,
        "max_positive_similarity": max_positive_similarity, "cross_encoder": cross_encoder, "index": index,
        "bm25_backend": bm25_backend, "corpus": str(corpus) if corpus else None, "formats": formats,
        "batch_size": batch_size, "backend": backend,
    })
    if (shard is None) != (num_shards is None):
        raise ConfigError("--shard and --num-shards go together")
    if shard is not None and num_shards is not None:
        done = warm_cache(store, cfg, from_ref, shard, num_shards)
        info(f"shard {shard + 1}/{num_shards}: encoded {done['anchors_encoded']} anchors and "
             f"{done['texts_encoded']} candidate texts into the cache; run `pipe mine` without --shard to finish")
        return
    report(run_mine(store, cfg, from_ref, force))
