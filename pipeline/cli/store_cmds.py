"""`pipe ls` and `pipe show`: look into the artifact store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pipe_embed.pipeline.cli.app import DataDir, command, setup
from pipe_embed.pipeline.core.listing import artifact_rows
from rich.console import Console
from rich.table import Table


@command("ls", "List artifacts, newest first, with time, inputs and headline stats.")
def ls(
    stage: Annotated[str | None, typer.Argument(help="Only this stage.")] = None,
    data_dir: DataDir = Path("data"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    store = setup(data_dir)
    rows = artifact_rows(store, stage)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no artifacts in {store.root}" + (f" for stage '{stage}'" if stage else ""))
        return
    table = Table(show_lines=False)
    for column in ("ref", "finished", "inputs", "headline"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["ref"], row["finished"], ", ".join(row["inputs"]) or "-",
                      ", ".join(f"{k}={v}" for k, v in row["headline"].items()))
    Console(width=max(120, Console().width)).print(table)


@command("show", "Print one artifact's manifest (REF: stage@latest, stage@<version prefix>, or a path).")
def show(
    ref: Annotated[str, typer.Argument(help="stage@latest, stage@<prefix>, or a directory.")],
    data_dir: DataDir = Path("data"),
    path: Annotated[bool, typer.Option("--path", help="Print only the artifact's directory.")] = False,
) -> None:
    store = setup(data_dir)
    artifact = store.resolve(ref)
    if path:
        typer.echo(str(artifact.path.resolve()))
        return
    typer.echo(json.dumps(artifact.manifest, indent=2, ensure_ascii=False))
