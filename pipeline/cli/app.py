"""The typer application: one-line errors, the options every stage command shares, and `stage_command`.

The shared options (`--data-dir`, `--config`, `--force`, `-v`, `-q`) are declared once here and
read once into a `Shared` value: after the command name (`pipe train --data-dir d`) or before it
(`pipe --data-dir d train`). Stage commands are generated from their config dataclasses
(pipe_embed.pipeline.cli.options), so a new config field is a new flag with its doc as help.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from pipe_embed.pipeline.cli.options import SHARED_PANEL, option_parameter, with_signature
from pipe_embed.pipeline.core.config import register_config
from pipe_embed.pipeline.core.console import error, info, set_verbosity
from pipe_embed.pipeline.core.errors import PipeError, from_os_error
from pipe_embed.pipeline.core.store import RunOutcome, Store

F = TypeVar("F", bound=Callable[..., Any])
HELP = "Fine-tune text-embedding models on your own glossary: crawl → compose → mine → train → iterate."


# typer's exception classes (its own or click's, depending on the typer release), found without
# importing click: BadParameter -> UsageError -> ClickException.
_UsageError: type[Exception] = typer.BadParameter.__mro__[1]
_ClickException: type[Exception] = typer.BadParameter.__mro__[2]
_ROOT: list[Shared] = []  # the shared options given before the command name, for this invocation


def _switch_help(option: Any) -> Any:
    """`--help` is a switch: show it without a value metavar."""
    if option is not None:
        option.metavar = ""
    return option


class PipeCommand(TyperCommand):
    """A command whose --help reads as a switch."""

    def get_help_option(self, ctx: Any) -> Any:
        return _switch_help(super().get_help_option(ctx))


class PipeGroup(TyperGroup):
    """Usage errors (unknown flag, bad value) as one line with where to look, exit 2."""

    def get_help_option(self, ctx: Any) -> Any:
        return _switch_help(super().get_help_option(ctx))

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]  # click overloads main on standalone_mode; one signature serves both
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                   standalone_mode=False, **extra)
        except _UsageError as exc:
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
                sys.exit(0)
            where = ctx.command_path if ctx is not None else "pipe"
            error(f"{exc.format_message()} — see `{where} --help`")  # type: ignore[attr-defined]  # a click UsageError, typed as Exception (found without importing click)
            sys.exit(2)
        except _ClickException as exc:
            error(exc.format_message())  # type: ignore[attr-defined]  # a click ClickException, typed as Exception (found without importing click)
            sys.exit(getattr(exc, "exit_code", 1))
        except typer.Abort:
            error("aborted")
            sys.exit(1)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="pipe",
    cls=PipeGroup,
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@dataclass
class Shared:
    """The options every stage command takes."""

    data_dir: Path
    config: Path | None
    force: bool
    verbose: bool
    quiet: bool


SHARED_NAMES = ("data_dir", "config", "force", "verbose", "quiet")

# For the hand-written store commands (ls, show, gc), which take only the store root. A str, not a
# Path: Path("") reads as ".", and an empty --data-dir must be refused, not taken as the current dir.
DataDir = Annotated[str, typer.Option("--data-dir", envvar="PIPE_DATA_DIR", metavar="DIR",
                                      help="Artifact store root.", show_default=True)]
EMPTY_DATA_DIR_HINT = "pass --data-dir DIR (use --data-dir . for the current directory)"


def data_dir_path(value: str | Path) -> Path:
    """The --data-dir value as a path; an empty one is refused rather than read as the current dir."""
    if isinstance(value, str) and not value.strip():
        raise PipeError("--data-dir is empty", hint=EMPTY_DATA_DIR_HINT)
    return Path(value)


def shared_parameters() -> list:
    """`--data-dir`, `--config`, `--force`, `-v`, `-q` as parameters (None = not given here)."""
    panel = SHARED_PANEL
    return [
        option_parameter("data_dir", str | None, None, "--data-dir", envvar="PIPE_DATA_DIR", metavar="DIR",
                         help="Artifact store root. [dim]\\[default: ./data][/dim]", rich_help_panel=panel),
        option_parameter("config", Path | None, None, "--config", metavar="FILE",
                         help="Config file (TOML, YAML or JSON; one table per stage).", rich_help_panel=panel),
        option_parameter("force", bool, False, "--force", help="Recompute even when an identical artifact exists.",
                         rich_help_panel=panel),
        option_parameter("verbose", bool, False, "--verbose", "-v", help="Show debug detail.", rich_help_panel=panel),
        option_parameter("quiet", bool, False, "--quiet", "-q", help="Only errors.", rich_help_panel=panel),
    ]


def read_shared(values: dict[str, Any]) -> Shared:
    """Pop the shared options from a command's values; fall back to those given before the command."""
    root = _ROOT[-1] if _ROOT else None
    got = {name: values.pop(name, None) for name in SHARED_NAMES}
    if got["data_dir"] is not None:
        data_dir = data_dir_path(got["data_dir"])
    else:
        data_dir = root.data_dir if root else default_data_dir()
    shared = Shared(data_dir=data_dir, config=got["config"] or (root.config if root else None),
                    force=bool(got["force"] or (root and root.force)),
                    verbose=bool(got["verbose"] or (root and root.verbose)),
                    quiet=bool(got["quiet"] or (root and root.quiet)))
    set_verbosity(-1 if shared.quiet else (1 if shared.verbose else 0))
    return shared


def default_data_dir() -> Path:
    """$PIPE_DATA_DIR, or ./data when it is unset or empty."""
    return Path(os.environ.get("PIPE_DATA_DIR") or "data")


def open_store(shared: Shared) -> Store:
    """The artifact store of the shared options."""
    return Store(shared.data_dir)


def setup(data_dir: str | Path, verbose: bool = False, quiet: bool = False) -> Store:
    """Apply verbosity and open the store (for the store commands, which take only --data-dir)."""
    set_verbosity(-1 if quiet else (1 if verbose else 0))
    return Store(data_dir_path(data_dir))


def report(outcome: RunOutcome) -> None:
    """Say what a stage run produced (a new artifact or an up-to-date one); print its ref on stdout."""
    art = outcome.artifact
    where = art.path.resolve()
    if outcome.cached:
        info(f"[green]up to date[/green]: {art.ref} ({where}) — use --force to recompute")
    else:
        info(f"[green]wrote[/green] {art.ref} → {where}")
    typer.echo(art.ref)


def crash_log(exc: BaseException) -> Path:
    """Write the traceback of an unexpected exception to a log file and return its path."""
    folder = Path(os.environ.get("PIPE_LOG_DIR") or Path(tempfile.gettempdir()) / "pipe-logs")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"crash-{stamp}-{os.getpid()}.log"
    path.write_text(f"pipe {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(exc)),
                    encoding="utf-8")
    return path


def handle_errors(fn: F) -> F:
    """A PipeError is one red line and exit 2; anything unexpected is one line plus the log path, exit 1."""

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
        except (typer.Exit, typer.Abort, _ClickException, SystemExit):
            raise
        except OSError as exc:
            problem = from_os_error(exc)  # read-only or full disk, a file where a directory belongs
            if problem is not None:
                error(problem.line())
                raise typer.Exit(problem.exit_code) from None
            _crashed(exc)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: no traceback on the terminal
            _crashed(exc)

    return wrapper  # type: ignore[return-value]  # functools.wraps gives it fn's signature, so it is an F


def _crashed(exc: BaseException) -> NoReturn:
    """An unexpected error: one line with the log that holds its traceback, exit 1."""
    log = crash_log(exc)
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    error(f"unexpected {type(exc).__name__}: {first} — the traceback is in {log}; "
          "please report it with that file")
    raise typer.Exit(1) from None


def command(name: str, help_text: str) -> Callable[[F], F]:
    """Register a hand-written command with error handling: `@command("ls", "…")`."""

    def decorate(fn: F) -> F:
        app.command(name=name, help=help_text, cls=PipeCommand)(handle_errors(fn))
        return fn

    return decorate


def stage_command(name: str, help_text: str, params: Sequence[Any],
                  body: Callable[[Shared, dict[str, Any]], None], configs: dict[str, type] | None = None) -> None:
    """Register a generated stage command: its own parameters, then the shared ones.

    `body(shared, values)` gets the shared options and the command's values (None = flag not given).
    `configs` ({table: config class}) are registered so that a config-file key put under the wrong
    table can say which stage it belongs to.
    """
    for section, cls in (configs or {}).items():
        register_config(section, cls)

    def run(values: dict[str, Any]) -> None:
        shared = read_shared(values)
        body(shared, values)

    fn = with_signature(run, [*params, *shared_parameters()], name)
    app.command(name=name, help=help_text, cls=PipeCommand)(handle_errors(fn))


def _version(value: bool) -> None:
    if value:
        from pipe_embed.pipeline import __version__

        typer.echo(f"pipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, metavar="",
                                          help="Print the version and exit.")] = False,
    data_dir: Annotated[str | None, typer.Option("--data-dir", envvar="PIPE_DATA_DIR", metavar="DIR",
                                                  help="Artifact store root. [dim]\\[default: ./data][/dim]")] = None,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE", help="Config file for every stage.")] = None,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Recompute even when an identical artifact exists.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", metavar="", help="Show debug detail.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="Only errors.")] = False,
) -> None:
    """Fine-tune text-embedding models on your own glossary: crawl → compose → mine → train → iterate."""
    if data_dir is not None and not data_dir.strip():
        raise typer.BadParameter("must not be empty (use --data-dir . for the current directory)",
                                 param_hint="'--data-dir'")
    _ROOT[:] = [Shared(data_dir=Path(data_dir) if data_dir is not None else default_data_dir(), config=config,
                       force=force, verbose=verbose, quiet=quiet)]
