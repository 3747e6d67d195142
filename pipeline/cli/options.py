"""CLI options generated from the stage config dataclasses: flag, help and default come from `option()`.

A stage command is a list of `inspect.Parameter`s (typer reads a function's signature), built from
the config's fields plus the few command-only options (`--from`, `--input`, `--shard`). Every flag
defaults to None, meaning "not given", so the precedence defaults < config file < flags holds; the
help shows the dataclass default instead.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import typer
from rich.markup import escape

from pipe_embed.pipeline.core.config import config_docs, field_default

SHARED_PANEL = "Common options"
SECTION_SEP = "__"  # parameter name of an entry's setting: <entry>__<field> (a flag keeps its own name)


def section_prefix(prefix: str, entry: str) -> str:
    """Parameter-name prefix of an entry's settings: `cached-mnrl` -> `cached_mnrl__` (a Python identifier)."""
    return f"{prefix}{entry.replace('-', '_')}{SECTION_SEP}"


def flag_name(name: str) -> str:
    """`passage_max_length` -> `--passage-max-length`."""
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(get_args(tp))
    return tp, False


def _shown_default(value: Any) -> str | None:
    """The default as the help shows it; None hides an empty one."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def help_text(doc: str, default: Any) -> str:
    """The help of a flag: the field's doc and its dataclass default (rich markup escaped)."""
    shown = _shown_default(default)
    text = escape(doc)
    return f"{text} [dim]\\[default: {escape(shown)}][/dim]" if shown else text


def field_parameter(cls: type, field: dataclasses.Field[Any], tp: Any, *, name: str | None = None,
                    panel: str | None = None, choices: Sequence[str] | None = None) -> inspect.Parameter:
    """One `--flag` for one config field: type, choices, help and the default shown from the dataclass
    (`choices`: the names a registry knows, for the field that picks an entry)."""
    meta = field.metadata
    default = field_default(field)
    base, _ = _base_type(tp)
    decl = meta.get("flag") or flag_name(field.name)
    if base is bool and "/" not in decl:
        decl = f"{decl}/--no-{decl[2:]}"
    decls = [decl] + ([meta["short"]] if meta.get("short") else [])
    kwargs: dict[str, Any] = {"help": help_text(meta.get("doc", ""), default), "show_default": False,
                              "rich_help_panel": panel}
    if get_origin(base) is Literal:
        choices = [str(c) for c in get_args(base)]  # checked by the config's own validation
        kwargs["metavar"] = "|".join(choices)
        annotation: Any = str
    elif get_origin(base) in (list, tuple):
        kwargs["metavar"] = "A,B,…"
        annotation = str
    elif base in (bool, int, float, str):
        annotation = base
        kwargs["metavar"] = {bool: "", int: "INT", float: "FLOAT", str: "TEXT"}[base]
    elif base is Path:
        annotation = str
        kwargs["metavar"] = "PATH"
    else:
        annotation = str
    if choices:
        kwargs["metavar"] = "|".join(choices)
    return inspect.Parameter(name or field.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[annotation | None, typer.Option(*decls, **kwargs)])


def config_parameters(cls: type, *, only: Iterable[str] | None = None, skip: Iterable[str] = (),
                      prefix: str = "", panel: str | None = None,
                      sections: bool | Iterable[str] = True) -> list[inspect.Parameter]:
    """A parameter for every CLI field of a config dataclass (`option(cli=False)` ones excepted).

    A config with plug-ins (`SECTIONS`) gets, after its common flags, one help panel per entry
    (`--method faiss`) holding that entry's settings; `sections` limits which entries (True: all)."""
    hints = get_type_hints(cls)
    wanted = set(only) if only is not None else None
    registry = getattr(cls, "SECTIONS", None)
    params = []
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.metadata.get("cli", True):
            continue
        if wanted is not None and field.name not in wanted:
            continue
        choices = registry.names() if registry is not None and field.name == registry.field else None
        params.append(field_parameter(cls, field, hints[field.name], name=prefix + field.name, panel=panel,
                                      choices=choices))
    if registry is not None and sections:
        chosen = None if sections is True else set(sections)
        for entry in registry.entries():
            if entry.params is None or (chosen is not None and entry.name not in chosen):
                continue
            title = f"--{registry.field.replace('_', '-')} {entry.name}: {entry.help}"
            if panel:
                title = f"{panel}, {title}"
            params += config_parameters(entry.params, prefix=section_prefix(prefix, entry.name), panel=title,
                                        skip=skip)
    return params


def overrides(cls: type, values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The flags given for a config (None = not given), keyed by field name; an entry's flags as
    {entry: {field: value}}, the shape of its config table."""
    names = {f.name for f in dataclasses.fields(cls)}
    found: dict[str, Any] = {key[len(prefix):]: value for key, value in values.items()
                             if key.startswith(prefix) and key[len(prefix):] in names and value is not None}
    registry = getattr(cls, "SECTIONS", None)
    if registry is not None:
        for entry in registry.entries():
            if entry.params is None:
                continue
            given = overrides(entry.params, values, section_prefix(prefix, entry.name))
            if given:
                found[entry.name] = given
    return found


def option_parameter(name: str, annotation: Any, default: Any, *decls: str, help: str,
                     shown_default: str | None = None, **kwargs: Any) -> inspect.Parameter:
    """A command-only option (not a config field), e.g. `--from`; switches get no value metavar."""
    if shown_default:
        help = f"{help} [dim]\\[default: {escape(shown_default)}][/dim]"
    if annotation is bool:
        kwargs.setdefault("metavar", "")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, typer.Option(*decls, help=help, **kwargs)])


def argument_parameter(name: str, annotation: Any, default: Any, *, help: str) -> inspect.Parameter:
    """A positional argument."""
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                             annotation=Annotated[annotation, typer.Argument(help=help)])


def with_signature(body: Callable[[dict[str, Any]], None], params: Sequence[inspect.Parameter],
                   name: str) -> Callable[..., None]:
    """A function typer can read: it takes the given parameters and hands them to `body` as a dict."""
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword = [p for p in params if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD]

    def command(*args: Any, **kwargs: Any) -> None:
        values = dict(zip((p.name for p in positional), args))
        values.update(kwargs)
        body(values)

    command.__name__ = name
    command.__qualname__ = name
    command.__doc__ = body.__doc__
    command.__signature__ = inspect.Signature(positional + keyword)  # type: ignore[attr-defined]  # read by inspect.signature (typer); functions declare no such attribute
    command.__annotations__ = {}
    return command


def field_table(cls: type) -> list[tuple[str, str, str]]:
    """(flag, default, doc) rows of a config: the same text the help shows, for docs and tests."""
    return [(flag_name(name), str(_shown_default(default) or ""), doc) for name, default, doc in config_docs(cls)]


__all__ = ["config_parameters", "overrides", "option_parameter", "argument_parameter", "with_signature",
           "flag_name", "field_table", "SHARED_PANEL"]
