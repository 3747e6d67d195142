"""Where a data artifact is expected, a raw pairs file is composed on the fly (with the [compose] settings)."""

from __future__ import annotations

import os
from pathlib import Path

from pipe_embed.pipeline.core.config import load_config
from pipe_embed.pipeline.core.console import info
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.store import Store

PAIR_SUFFIXES = frozenset({".jsonl", ".json", ".csv", ".tsv", ".parquet"})


def is_pairs_file(value: str | None) -> bool:
    """A file of pairs (CSV/TSV/JSONL/Parquet), as opposed to a ref or an artifact directory."""
    if not value:
        return False
    path = Path(value)
    return path.is_file() and path.suffix.lower() in PAIR_SUFFIXES


FROM_HINT = ("give a pairs file (.csv, .tsv, .jsonl, .json, .parquet), a ref such as compose@latest, "
             "or an artifact directory <data dir>/<stage>/<version>")


def _looks_like_path(value: str) -> bool:
    """A value meant as a file or directory rather than a ref (`in/x`, `./x`, `pairs.jsonl`)."""
    return "@" not in value and ("/" in value or os.sep in value or value.startswith((".", "~"))
                                 or Path(value).suffix.lower() in PAIR_SUFFIXES or Path(value).exists())


def check_path(store: Store, value: str) -> None:
    """Say what a path that is no data artifact is instead: missing, a non-pairs file, a directory elsewhere."""
    path = Path(value).expanduser()
    if not (path.exists() or path.is_symlink()):
        raise PipeError(f"{value}: no such file or directory", hint=FROM_HINT)
    if not path.is_dir():
        if not path.is_file():
            raise PipeError(f"{value}: not a regular file or directory", hint=FROM_HINT)
        suffix = path.suffix or "no suffix"
        raise PipeError(f"{value}: not a pairs file ({suffix})", hint=FROM_HINT)
    if not store.inside(path):
        raise PipeError(f"{value}: a directory outside the data dir {store.root}, not a pairs file or an "
                        "artifact", hint=FROM_HINT)


def data_ref(store: Store, value: str | None, config_file: Path | None) -> str | None:
    """`value` unchanged, unless it names a pairs file: then the ref of that file composed. A path that
    is neither a pairs file nor an artifact of the store is refused, saying what it is."""
    if value is not None and not is_pairs_file(value) and _looks_like_path(value):
        check_path(store, value)
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
