"""Plug points by name: a registry of entries (mining methods, losses) that a stage looks up.

An entry is one module that declares a `Plugin` (its name, a one-line help, and the dataclass of
its own settings, which becomes the config table `[stage.name]` and a `--help` panel of flags) and
what it does. Built-ins are listed as "module:attribute" and imported on first use; a test or a
user's code adds one with `register`. Adding a method is one new file plus one registry line.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipe_embed.pipeline.core.errors import ConfigError


@dataclass(frozen=True)
class Plugin:
    """What every entry declares: its name, a one-line help, and its settings dataclass (or None)."""

    name: str
    help: str
    params: type | None = None


E = TypeVar("E", bound=Plugin)


class Registry(Generic[E]):
    """Entries of one kind by name: built-ins imported on first use, plus registered ones."""

    def __init__(self, kind: str, field: str, builtin: dict[str, str]) -> None:
        self.kind = kind  # "mining method", "loss": how messages name an entry
        self.field = field  # the config field that chooses an entry ("method", "loss")
        self._builtin = dict(builtin)
        self._loaded: dict[str, E] = {}

    def register(self, entry: E) -> None:
        """Add (or replace) an entry under its name."""
        self._loaded[entry.name] = entry

    def unregister(self, name: str) -> None:
        """Remove a registered entry (tests use it to clean up)."""
        self._loaded.pop(name, None)
        self._builtin.pop(name, None)

    def names(self) -> list[str]:
        """Every known name, built-ins first in their listed order."""
        return list(dict.fromkeys([*self._builtin, *self._loaded]))

    def __contains__(self, name: object) -> bool:
        return name in self._builtin or name in self._loaded

    def get(self, name: str) -> E:
        """The entry called `name`; an unknown name is a config error with a did-you-mean."""
        if name in self._loaded:
            return self._loaded[name]
        if name not in self._builtin:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            known = f"known: {', '.join(self.names())}"
            raise ConfigError(f"field '{self.field}': unknown {self.kind} {name!r}",
                              hint=f"did you mean '{close[0]}'? {known}" if close else known)
        module_name, _, attribute = self._builtin[name].partition(":")
        entry: E = getattr(importlib.import_module(module_name), attribute)
        if entry.name != name:
            raise RuntimeError(f"{self._builtin[name]} declares the name {entry.name!r}, listed as {name!r}")
        self._loaded[name] = entry
        return entry

    def entries(self) -> list[E]:
        """Every entry, loaded (the CLI reads them all to build its flag panels)."""
        return [self.get(name) for name in self.names()]

    def sections(self) -> dict[str, type]:
        """name -> settings dataclass, for the entries that have settings."""
        return {entry.name: entry.params for entry in self.entries() if entry.params is not None}


__all__ = ["Plugin", "Registry"]
