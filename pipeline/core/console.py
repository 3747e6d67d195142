"""Terminal output: a shared rich console on stderr, verbosity, and progress bars."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

T = TypeVar("T")

# emoji=False: an emoji code such as :x: in a message (a term, a path, a URL) is printed as written.
console = Console(stderr=True, highlight=False, emoji=False)
_verbosity = 0  # -1 quiet, 0 normal, 1 verbose
# The only markup a status line may carry: one style span at its very start, as pipe's own messages
# use (`[green]wrote[/green] …`, `[bold]round 2[/bold]: …`). Everything else (a file name such as
# `[/x].csv`, a term, a URL) is printed as written: lines are rich Text, never parsed as markup.
_LEADING_STYLE = re.compile(r"\[(bold|dim|italic|green|yellow|red|cyan|bold red|bold green)\](.*?)\[/(?:\1)?\]",
                            re.DOTALL)


def _text(message: str, style: str = "") -> Text:
    """A message as rich Text: its leading style span applied, every other character literal."""
    match = _LEADING_STYLE.match(message)
    if match is None:
        return Text(message, style=style)
    return Text.assemble((match.group(2), match.group(1)), message[match.end():], style=style)


def set_verbosity(level: int) -> None:
    """-1 hides everything but errors, 0 is normal, 1 adds debug lines."""
    global _verbosity
    _verbosity = level


def quiet() -> bool:
    return _verbosity < 0


def info(message: str) -> None:
    """A normal status line."""
    if _verbosity >= 0:
        console.print(_text(message), soft_wrap=True)


def debug(message: str) -> None:
    """A detail line shown with -v."""
    if _verbosity > 0:
        console.print(_text(message, "dim"), soft_wrap=True)


def warn(message: str) -> None:
    """A warning, shown unless -q."""
    if _verbosity >= 0:
        console.print(Text.assemble(("warning:", "yellow"), " ", _text(message)), soft_wrap=True)


def error(message: str) -> None:
    """An error line, always shown (the message is plain text: brackets in it are printed as they are)."""
    console.print(Text.assemble(("error:", "bold red"), " ", Text(message)), soft_wrap=True)


def _make_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # a file name is shown as written
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
    if total is None and isinstance(items, Sized):
        total = len(items)
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

