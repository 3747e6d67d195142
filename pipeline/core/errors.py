"""User-facing errors: one clear line, no traceback, a non-zero exit."""

from __future__ import annotations

import errno
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


# OSErrors a user causes (a read-only or full disk, a file where a directory belongs, permissions),
# with what to do about each; any other OSError is a bug and keeps its traceback.
_OS_HINTS = {
    errno.EROFS: "the file system is read-only: pass --data-dir DIR on a writable disk",
    errno.EACCES: "no permission: check that path's permissions (a store needs a --data-dir you can write)",
    errno.EPERM: "not permitted: check that path's permissions (a store needs a --data-dir you can write)",
    errno.ENOSPC: "the disk is full: free space (`pipe gc --unreferenced` lists old artifacts) "
                  "or pass --data-dir DIR on another disk",
    errno.EDQUOT: "the disk quota is used up: free space or pass --data-dir DIR on another disk",
    errno.EFBIG: "a file grew larger than the file system allows: use another disk",
    errno.ENOTDIR: "a file stands where a directory belongs: move it away or choose another path",
    errno.EISDIR: "a directory stands where a file belongs: move it away or choose another path",
    errno.EEXIST: "something already stands at that path: move it away or choose another path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
    errno.ELOOP: "too many symbolic links in the path: fix the links or choose another path",
}


class StorageError(PipeError):
    """A file-system error the user can fix (read-only, full, a file where a directory belongs)."""


def from_os_error(exc: OSError, doing: str = "") -> StorageError | None:
    """One line naming the path, the failure and what to do, or None for an OSError that is a bug."""
    hint = _OS_HINTS.get(exc.errno) if exc.errno is not None else None
    if hint is None:
        return None
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    reason = exc.strerror or str(exc)
    what = f"{doing}: {reason}" if doing else reason
    return StorageError(f"{where}: {what}" if where else what, hint=hint)
