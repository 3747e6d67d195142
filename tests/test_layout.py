"""The house rules of the code: one import namespace, floors that import only downwards, no cycles.

Floors: the core (pipe_embed.pipeline.core and the package root) imports nothing above it; each
stage (compose, crawlers, mining, training) imports only the core, never another stage; the
orchestration (cli, iterate, sweep, report) sits on top. The map is
pipe_embed.pipeline.core.floors; these tests read it. Imports inside functions count too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.floors import CORE, FLOORS, PACKAGE, STAGE, TOP, floor_of
from pipe_embed.pipeline.core.imports import imports_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"pipeline": "pipe_embed.pipeline", "crawlers": "pipe_embed.crawlers",
           "mining": "pipe_embed.mining", "training": "pipe_embed.training"}


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


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = {target for target in imports_of(path, name, PACKAGE) if target in modules and target != name}
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
    assert floor_of("pipe_embed.pipeline.core.store") == (CORE, "pipe_embed.pipeline.core")
    assert floor_of("pipe_embed.mining.stage") == (STAGE, "pipe_embed.mining")
    assert floor_of("pipe_embed.pipeline.cli.app") == (TOP, "pipe_embed.pipeline.cli")
    with pytest.raises(ValueError, match="floor map"):
        floor_of("pipe_embed.pipeline.somewhere_new")


def test_every_package_sits_on_one_floor_of_the_map():
    """The map in the package is the one source: every package folder is on it, once."""
    packages = {module_name(p.parent / "__init__.py") for folder in FOLDERS for p in (ROOT / folder).rglob("__init__.py")}
    placed = [p for members in FLOORS.values() for p in members]
    assert len(placed) == len(set(placed))
    for package in packages - {"pipe_embed.pipeline"}:
        floor_of(package)  # raises for a package that no floor lists
    for module in source_modules():
        floor_of(module)


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
