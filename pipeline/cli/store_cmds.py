"""`pipe ls`, `pipe show` and `pipe gc`: look into the artifact store and keep it tidy."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipe_embed.pipeline.cli.app import DataDir, command, setup
from pipe_embed.pipeline.core.listing import artifact_rows


@command("ls", "List artifacts, newest first, with time, inputs and headline stats.")
def ls(
    stage: Annotated[str | None, typer.Argument(help="Only this stage.")] = None,
    data_dir: DataDir = "data",
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
        if "corrupt" in row:
            table.add_row(f"{row['ref']} (corrupt)", row["finished"], "-", row["corrupt"])
            continue
        table.add_row(row["ref"], row["finished"], ", ".join(row["inputs"]) or "-",
                      ", ".join(f"{k}={v}" for k, v in row["headline"].items()))
    # Cells are plain text: no markup or emoji codes may rewrite a name or a stat.
    Console(width=max(120, Console().width), markup=False, emoji=False, highlight=False).print(table)


@command("show", "Print one artifact's manifest (REF: stage@latest, stage@<version prefix>, or its directory).")
def show(
    ref: Annotated[str, typer.Argument(help="stage@latest, stage@<prefix>, or an artifact directory inside the data dir.")],
    data_dir: DataDir = "data",
    path: Annotated[bool, typer.Option("--path", help="Print only the artifact's directory.")] = False,
) -> None:
    store = setup(data_dir)
    artifact = store.resolve(ref)
    if path:
        typer.echo(str(artifact.path.resolve()))
        return
    typer.echo(json.dumps(artifact.manifest, indent=2, ensure_ascii=False))


@command("gc", "Remove what dead runs left in the store (and, with --unreferenced, old artifacts); a dry run unless --yes.")
def gc(
    unreferenced: Annotated[bool, typer.Option(
        "--unreferenced", metavar="",
        help="Also remove artifacts that no stage@latest and no other artifact refers to.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", metavar="", help="Really remove (default: only list).")] = False,
    any_host: Annotated[bool, typer.Option(
        "--any-host", metavar="",
        help="Also remove other hosts' leftovers: only when no other machine runs pipe on this store.")] = False,
    resumable: Annotated[bool, typer.Option(
        "--resumable", metavar="",
        help="Also remove stopped runs that would resume where they stopped (their rerun then starts over).")] = False,
    data_dir: DataDir = "data",
) -> None:
    from pipe_embed.pipeline.core import gc as store_gc

    store = setup(data_dir)
    todo = store_gc.plan(store, unreferenced_artifacts=unreferenced, any_host=any_host, resumable=resumable)
    for item in todo.kept:
        typer.echo(f"keep     {store_gc.human_size(item.bytes):>9}  {item.path}  {item.reason}")
    verb = {"delete": "remove", "restore": "restore"}
    for item in todo.act:
        typer.echo(f"{verb[item.action]:<8} {store_gc.human_size(item.bytes):>9}  {item.path}  {item.reason}")
    if not todo.act:
        typer.echo(f"nothing to remove in {store.root}")
        return
    total = store_gc.human_size(todo.bytes)
    if not yes:
        typer.echo(f"{len(todo.act)} to remove or restore, {total} — dry run: nothing changed; "
                   "run again with --yes to do it")
        return
    done = store_gc.apply(store, todo)
    for item, why in done.skipped:
        typer.echo(f"skipped  {item.path}: {why}")
    restored = f", restored {len(done.restored)}" if done.restored else ""
    typer.echo(f"removed {len(done.removed)}{restored}, freed {store_gc.human_size(done.bytes)}")
