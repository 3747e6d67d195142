"""Summaries of the artifacts in a store, for `pipe ls` and reports."""

from __future__ import annotations

from typing import Any

from pipe_embed.pipeline.core.store import Store


def artifact_rows(store: Store, stage: str | None = None) -> list[dict[str, Any]]:
    """One summary per artifact (ref, time, inputs, headline), newest first."""
    stages = [stage] if stage else store.stages()
    rows = []
    for name in stages:
        for art in store.versions(name):
            headline = art.manifest.get("headline") or {
                k: v for k, v in art.stats.items() if isinstance(v, (int, float, str))}
            rows.append({
                "ref": art.ref,
                "finished": art.manifest.get("finished", "?")[:19].replace("T", " "),
                "inputs": [f"{i['stage']}@{i['version'][:8]}" for i in art.inputs],
                "headline": headline,
                "path": str(art.path),
            })
    return sorted(rows, key=lambda r: r["finished"], reverse=True)
