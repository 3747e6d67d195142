"""The house rules of the code: one import namespace, floors that import only downwards, no cycles.

Floors: the core (pipe_embed.pipeline.core and the package root) imports nothing above it; each
stage (compose, crawlers, mining, training) imports only the core, never another stage; the
orchestration (iterate, report, cli) sits on top. Imports inside functions count too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pipe_embed"
FOLDERS = {"pipeline": "pipe_embed.pipeline", "crawlers": "pipe_embed.crawlers",
           "mining": "pipe_embed.mining", "training": "pipe_embed.training"}

CORE, STAGE, TOP = 0, 1, 2
STAGES = ("pipe_embed.pipeline.compose", "pipe_embed.crawlers", "pipe_embed.mining", "pipe_embed.training")


def module_name(path: Path) -> str:
    """The import name of a source file under one of the mapped folders."""
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    parts[0] = FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    """Every module of the package, by import name."""
    found = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(path: Path, name: str) -> set[str]:
    """The pipe_embed modules a file imports, at any depth of the file (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith(PACKAGE):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def floor_of(name: str) -> tuple[int, str]:
    """(floor, group) of a module: core, one of the stages, or the orchestration on top."""
    if name in (PACKAGE, "pipe_embed.pipeline") or name.startswith("pipe_embed.pipeline.core"):
        return CORE, "core"
    for stage in STAGES:
        if name == stage or name.startswith(stage + "."):
            return STAGE, stage
    return TOP, "orchestration"


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = {target for target in imports_of(path, name) if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_only_go_down_and_stages_never_import_each_other():
    bad = []
    for source, targets in import_graph().items():
        floor, group = floor_of(source)
        for target in sorted(targets):
            target_floor, target_group = floor_of(target)
            if target_floor > floor or (floor == STAGE and target_floor == STAGE and target_group != group):
                bad.append(f"{source} ({group}) imports {target} ({target_group})")
    assert not bad, "imports against the floors:\n" + "\n".join(bad)


def test_the_checks_catch_a_cycle_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert floor_of("pipe_embed.pipeline.core.store") == (CORE, "core")
    assert floor_of("pipe_embed.mining.stage") == (STAGE, "pipe_embed.mining")
    assert floor_of("pipe_embed.pipeline.cli.app") == (TOP, "orchestration")


def test_every_package_folder_is_installed_under_the_one_namespace():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {module_name(p) for folder in FOLDERS for p in (ROOT / folder).rglob("__init__.py")}
    assert on_disk == listed, f"pyproject [tool.setuptools] packages differ: missing {on_disk - listed}, extra {listed - on_disk}"
    assert all(name.startswith(PACKAGE + ".") for name in listed)
    assert set(setuptools["package-dir"]) == set(FOLDERS.values())


@pytest.mark.parametrize("generic", ["pipeline", "training", "mining", "crawlers"])
def test_no_generic_top_level_name_is_importable_from_site_packages(generic: str):
    """Installed, pipe puts only `pipe_embed` on the path; the repo root (tests' cwd) is not counted."""
    import importlib.util

    spec = importlib.util.find_spec(generic)
    if spec is None:
        return
    origin = Path(spec.origin or next(iter(spec.submodule_search_locations or []), ""))
    assert ROOT in origin.resolve().parents, f"{generic} is importable from {origin}"
