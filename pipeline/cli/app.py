"""The typer application and the options every stage command shares."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pipe_embed.pipeline.core.console import error, info, set_verbosity
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.store import RunOutcome, Store

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="pipe",
    help="Fine-tune text-embedding models on your own glossary: crawl → compose → mine → train → iterate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

DataDir = Annotated[Path, typer.Option("--data-dir", envvar="PIPE_DATA_DIR",
                                       help="Artifact store root.", show_default=True)]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="Config file (TOML, YAML or JSON).")]
Force = Annotated[bool, typer.Option("--force", help="Recompute even when an identical artifact exists.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Show debug detail.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors.")]


def default_data_dir() -> Path:
    return Path(os.environ.get("PIPE_DATA_DIR", "data"))


def setup(data_dir: Path, verbose: bool = False, quiet: bool = False) -> Store:
    """Apply verbosity and open the store: the first line of every stage command."""
    set_verbosity(-1 if quiet else (1 if verbose else 0))
    return Store(data_dir)


def report(outcome: RunOutcome) -> None:
    """Say what a stage run produced: a new artifact or an up-to-date one."""
    art = outcome.artifact
    if outcome.cached:
        info(f"[green]up to date[/green]: {art.ref} ({art.path}) — use --force to recompute")
    else:
        info(f"[green]wrote[/green] {art.ref} → {art.path}")
    typer.echo(art.ref)


def handle_errors(fn: F) -> F:
    """Turn a PipeError into one red line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PipeError as exc:
            error(exc.line())
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted; no artifact was written for the unfinished stage")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def command(name: str, help_text: str) -> Callable[[F], F]:
    """Register a command on the app with error handling: `@command("compose", "…")`."""

    def decorate(fn: F) -> F:
        app.command(name=name, help=help_text)(handle_errors(fn))
        return fn

    return decorate


def _version(value: bool) -> None:
    if value:
        from pipe_embed.pipeline import __version__

        typer.echo(f"pipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Fine-tune text-embedding models on your own glossary: crawl → compose → mine → train → iterate."""
