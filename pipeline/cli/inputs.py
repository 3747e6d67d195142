"""Where a data artifact is expected, a raw pairs file is composed on the fly (with the [compose] settings)."""

from __future__ import annotations

from pathlib import Path

from pipe_embed.pipeline.core.config import load_config
from pipe_embed.pipeline.core.console import info
from pipe_embed.pipeline.core.store import Store

PAIR_SUFFIXES = frozenset({".jsonl", ".json", ".csv", ".tsv", ".parquet"})


def is_pairs_file(value: str | None) -> bool:
    """A file of pairs (CSV/TSV/JSONL/Parquet), as opposed to a ref or an artifact directory."""
    if not value:
        return False
    path = Path(value)
    return path.is_file() and path.suffix.lower() in PAIR_SUFFIXES


def data_ref(store: Store, value: str | None, config_file: Path | None) -> str | None:
    """`value` unchanged, unless it names a pairs file: then the ref of that file composed."""
    if not is_pairs_file(value):
        return value
    from pipe_embed.pipeline.compose.stage import ComposeConfig, run_compose

    assert value is not None
    config = load_config(ComposeConfig, "compose", config_file, {})
    from pipe_embed.mining.bm25 import bm25_negatives_for_pairs

    outcome = run_compose(store, config, inputs=[Path(value)], negatives=bm25_negatives_for_pairs)
    info(f"{value} is a pairs file, not an artifact: composed it into {outcome.artifact.ref} "
         "(with the [compose] settings; run `pipe compose --input FILE` to choose splits yourself)")
    return outcome.artifact.ref
