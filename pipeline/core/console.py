"""Terminal output: a shared rich console on stderr, verbosity, and progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True, highlight=False)
_verbosity = 0  # -1 quiet, 0 normal, 1 verbose


def set_verbosity(level: int) -> None:
    """-1 hides everything but errors, 0 is normal, 1 adds debug lines."""
    global _verbosity
    _verbosity = level


def quiet() -> bool:
    return _verbosity < 0


def info(message: str) -> None:
    """A normal status line."""
    if _verbosity >= 0:
        console.print(message, soft_wrap=True)


def debug(message: str) -> None:
    """A detail line shown with -v."""
    if _verbosity > 0:
        console.print(f"[dim]{message}[/dim]")


def warn(message: str) -> None:
    """A warning, shown unless -q."""
    if _verbosity >= 0:
        console.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def error(message: str) -> None:
    """An error line, always shown (the message is plain text: brackets in it are printed as they are)."""
    console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)


def _make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=_verbosity < 0 or not console.is_terminal,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (hidden when quiet or not on a terminal)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with _make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A progress bar advanced by hand: `with progress_bar("encode", n) as advance: advance(k)`."""
    with _make_progress() as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)

