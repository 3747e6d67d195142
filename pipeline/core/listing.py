"""Summaries of the artifacts in a store, for `pipe ls` and reports."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.store import PIPELINE_STAGES, Store, valid_stage_name, written_ns


def known_stages(store: Store) -> list[str]:
    """The pipeline's stages and any other stage directory this store holds."""
    return list(dict.fromkeys([*PIPELINE_STAGES, *store.stage_names()]))


def check_stage(store: Store, stage: str) -> None:
    """Refuse a stage name that is neither a pipeline stage nor a directory of this store."""
    if not valid_stage_name(stage):
        raise PipeError(f"'{stage}' is not a stage name", hint=f"known stages: {', '.join(known_stages(store))}")
    if stage not in known_stages(store):
        raise PipeError(f"unknown stage '{stage}'", hint=f"known stages: {', '.join(known_stages(store))}")


def _mtime(path: Any) -> str:
    """A directory's modification time as `YYYY-MM-DD HH:MM:SS` (UTC), '?' when unreadable."""
    try:
        stamp = os.stat(path).st_mtime
    except OSError:
        return "?"
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def artifact_rows(store: Store, stage: str | None = None) -> list[dict[str, Any]]:
    """One summary per artifact (ref, time, inputs, headline), newest first; then one row per
    directory whose manifest is damaged (`corrupt`: why), so nothing in the store is invisible."""
    if stage is not None:
        check_stage(store, stage)
    stages = [stage] if stage else store.stage_names()
    rows: list[tuple[int, dict[str, Any]]] = []
    broken = []
    for name in stages:
        for art in store.versions(name):
            headline = art.manifest.get("headline") or {
                k: v for k, v in art.stats.items() if isinstance(v, (int, float, str))}
            finished = art.manifest.get("finished", "?")
            rows.append((written_ns(art), {
                "ref": art.ref,
                "finished": (finished if isinstance(finished, str) else "?")[:19].replace("T", " "),
                "inputs": [f"{i.get('stage')}@{str(i.get('version'))[:8]}" for i in art.inputs if isinstance(i, dict)],
                "headline": headline if isinstance(headline, dict) else {},
                "path": str(art.path),
            }))
        for path, why in store.corrupt(name):
            broken.append({"ref": f"{name}/{path.name}", "finished": _mtime(path), "inputs": [],
                           "headline": {}, "path": str(path), "corrupt": why})
    rows.sort(key=lambda pair: pair[0], reverse=True)  # newest first by the store's record
    return [row for _, row in rows] + broken
