"""Content fingerprints: stable hashes of JSON-able values and of files."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.imports import import_closure

_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal values hash equally."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def hash_value(value: Any, length: int = 64) -> str:
    """sha256 of the canonical JSON of a value (truncated to `length` hex digits)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


def hash_text(text: str, length: int = 64) -> str:
    """sha256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def hash_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_files(paths: list[Path], root: Path | None = None) -> str:
    """One hash over several files: their (relative) names and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        name = str(path.relative_to(root)) if root else path.name
        digest.update(name.encode())
        digest.update(hash_file(path).encode())
    return digest.hexdigest()


def code_modules(module_name: str) -> str:
    """Where a stage's own code starts: the package of the module that defines the stage
    (`pipe_embed.mining.stage` -> `pipe_embed.mining`), or the module alone when its package is a
    floor of separate runs (the orchestration: iterate, sweep, report) or the package root.
    `code_version` adds everything that code imports."""
    package, _, _ = module_name.rpartition(".")
    alone = ("", "pipe_embed.pipeline", "pipe_embed.pipeline.orchestrate")
    return module_name if package in alone else package


@functools.lru_cache(maxsize=64)
def code_version(name: str, length: int = 16) -> str:
    """sha256 over the source of what a stage runs: the module or package `name` and every module of
    the same top-level package that it imports, transitively (function-level imports included).

    Part of every artifact's version, so that a change to a stage's code, or to a core module it
    uses, re-runs that stage instead of serving a stale cache hit; a module it never imports does not.
    """
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ValueError(f"no module named {name!r}")
    start = [name]
    if spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            for path in Path(root).rglob("*.py"):
                if "__pycache__" in path.parts:
                    continue
                parts = list(path.relative_to(root).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts.pop()
                start.append(".".join([name, *parts]))
    files = import_closure(start, name.split(".")[0])
    digest = hashlib.sha256()
    for module in sorted(files):
        digest.update(module.encode("utf-8") + b"\0")
        digest.update(files[module].read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()[:length]
