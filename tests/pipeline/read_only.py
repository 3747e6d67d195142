"""A read-only or full file system under one folder, simulated in-process (tests often run as root,
for whom file modes forbid nothing, and mounting a read-only file system needs privileges)."""

from __future__ import annotations

import builtins
import errno
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _under(path: Any, root: Path) -> bool:
    """Whether a path argument (str, bytes, Path or a file descriptor) names something below root."""
    if isinstance(path, int):
        return False
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike, str)) else str(path)
    try:
        Path(os.path.abspath(text)).relative_to(root)
    except ValueError:
        return False
    return True


def refuse_writes(monkeypatch: pytest.MonkeyPatch, root: Path, code: int = errno.EROFS) -> None:
    """Make every write below `root` fail with `code` (EROFS: read-only, ENOSPC: disk full); reads work."""
    root = Path(os.path.abspath(root))
    message = os.strerror(code)

    def fail(path: Any) -> None:
        raise OSError(code, message, os.fsdecode(path) if not isinstance(path, int) else str(path))

    def guard_open(real: Callable[..., Any]) -> Callable[..., Any]:
        def opener(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if any(flag in mode for flag in "wax+") and _under(file, root):
                fail(file)
            return real(file, mode, *args, **kwargs)
        return opener

    def guard_os_open(real: Callable[..., Any]) -> Callable[..., Any]:
        def opener(path: Any, flags: int, *args: Any, **kwargs: Any) -> Any:
            if flags & _WRITE_FLAGS and _under(path, root):
                fail(path)
            return real(path, flags, *args, **kwargs)
        return opener

    def guard_path(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if _under(path, root):
                fail(path)
            return real(path, *args, **kwargs)
        return call

    def guard_two(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            for path in (src, dst):
                if _under(path, root):
                    fail(path)
            return real(src, dst, *args, **kwargs)
        return call

    def guard_mkdir(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if _under(path, root):
                if os.path.isdir(path):  # the kernel says EEXIST before EROFS for an existing directory
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
                fail(path)
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(builtins, "open", guard_open(builtins.open))
    monkeypatch.setattr(io, "open", guard_open(io.open))
    monkeypatch.setattr(os, "open", guard_os_open(os.open))
    monkeypatch.setattr(os, "mkdir", guard_mkdir(os.mkdir))
    for name in ("unlink", "remove", "rmdir"):
        monkeypatch.setattr(os, name, guard_path(getattr(os, name)))
    for name in ("rename", "replace", "symlink"):
        monkeypatch.setattr(os, name, guard_two(getattr(os, name)))
