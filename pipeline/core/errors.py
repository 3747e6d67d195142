"""User-facing errors: one clear line, no traceback, a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class PipeError(Exception):
    """A mistake the user can fix (bad flag, missing file, malformed row); printed as one line."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """The single line shown to the user."""
        return f"{self.message} — {self.hint}" if self.hint else self.message


class InputError(PipeError):
    """Bad input data: names the file (and line or field) at fault."""

    def __init__(self, path: str | Path | None, message: str, *, line: int | None = None,
                 hint: str | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}", hint=hint)


class ConfigError(PipeError):
    """A bad configuration value: names the field at fault."""


class MissingDependency(PipeError):
    """An optional dependency is not installed: says the exact pip line."""

    def __init__(self, module: str, extra: str | None = None, package: str | None = None) -> None:
        pkg = package or module
        how = f'pip install "pipe-embed[{extra}]"' if extra else f"pip install {pkg}"
        super().__init__(f"the optional dependency '{module}' is not installed", hint=f"run: {how}")


def require(module: str, extra: str | None = None, package: str | None = None):
    """Import an optional heavy dependency, or fail with the pip line that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependency(module, extra, package) from exc
