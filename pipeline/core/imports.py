"""Which modules a source file imports (at any depth, function-level imports included), and the
transitive closure of that: what the code version of a stage hashes and what the layout test checks."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path


def module_file(name: str) -> Path | None:
    """The source file of a module or package (its `__init__.py`), or None if it has none."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def imports_of(path: Path, name: str, root: str) -> set[str]:
    """The modules under `root` that the file `path` (module `name`) imports, anywhere in the file.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); callers keep the names that
    are modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if _within(alias.name, root))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if _within(target, root):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, root: str) -> bool:
    return name == root or name.startswith(root + ".")


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_closure(start: list[str], root: str) -> dict[str, Path]:
    """Every module under `root` that the `start` modules import, transitively, with its file.

    Parent packages count (importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py`)."""
    files: dict[str, Path] = {}
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in files:
            continue
        path = module_file(name)
        if path is None:
            continue
        files[name] = path
        todo.extend(p for p in _parents(name) if p not in files)
        todo.extend(t for t in imports_of(path, name, root) if t not in files)
    return files


__all__ = ["imports_of", "import_closure", "module_file"]
