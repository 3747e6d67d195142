"""What a fresh install needs: every third-party import is a declared dependency, and every module imports.

A green suite once hid a broken install (lxml was on the machine, not in the dependencies). These
tests read the imports of the package, its tests and benchmarks, and check each against pyproject:
module-level imports of the package against the core dependencies, lazy ones against the core or an
extra, tests against the core plus the `dev` extra. A subprocess of the installed environment then
imports every module of the package.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_FOLDERS = ("pipeline", "crawlers", "mining", "training")
# Our own modules: the package, and the scripts beside the tests and benchmarks (imported by path).
OWN = {"pipe_embed", "tests", "benchmarks"} | {
    p.stem for folder in ("tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")}
# Optional packages that are not installed here, by import name -> distribution name.
NOT_INSTALLED = {"bitsandbytes": "bitsandbytes", "onnxruntime": "onnxruntime", "optimum": "optimum",
                 "openvino": "openvino", "wandb": "wandb", "mlflow": "mlflow", "ray": "ray",
                 "tomli": "tomli"}  # tomli: Python < 3.11 only


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(core dependency names, extra -> names) from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(specs: list[str]) -> set[str]:
        return {normalize(re.match(r"[A-Za-z0-9_.\-]+", spec).group(0)) for spec in specs}  # type: ignore[union-attr]

    extras = {extra: names(specs) for extra, specs in project.get("optional-dependencies", {}).items()}
    return names(project["dependencies"]), extras


def third_party_imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level, nested) top-level names a file imports, stdlib and our own left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    nested: set[str] = set()
    top_level_nodes = set()
    for node in tree.body:
        for child in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            top_level_nodes.add(id(child))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found = {node.module.split(".")[0]}
        else:
            continue
        found -= set(sys.stdlib_module_names) | OWN | {"__future__", "_typeshed"}  # _typeshed: type stubs only
        (top if id(node) in top_level_nodes else nested).update(found)
    return top, nested


@functools.lru_cache(maxsize=1)
def installed_distributions() -> dict[str, list[str]]:
    """Import name -> distributions, read once (it scans every installed package)."""
    return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str:
    """The distribution that provides an import name (as installed here)."""
    if module in NOT_INSTALLED:
        return normalize(NOT_INSTALLED[module])
    dists = installed_distributions().get(module)
    assert dists, f"'{module}' is imported but no installed distribution provides it"
    return normalize(dists[0])


def files_under(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py")) if "__pycache__" not in p.parts]


def test_every_import_of_the_package_is_declared():
    core, extras = declared()
    any_extra = set().union(*extras.values())
    missing = []
    for path in files_under(*PACKAGE_FOLDERS):
        top, nested = third_party_imports(path)
        for module in sorted(top):
            if distribution_of(module) not in core:
                missing.append(f"{path.relative_to(ROOT)}: module-level import of '{module}' is not a core dependency")
        for module in sorted(nested):
            if distribution_of(module) not in core | any_extra:
                missing.append(f"{path.relative_to(ROOT)}: '{module}' is neither a dependency nor in an extra")
    assert not missing, "\n".join(missing)


def test_every_import_of_the_tests_is_declared():
    core, extras = declared()
    allowed = core | extras.get("dev", set())
    optional = set().union(*extras.values())
    missing = []
    for path in files_under("tests"):
        top, nested = third_party_imports(path)
        for module in sorted(top):
            if distribution_of(module) not in allowed:
                missing.append(f"{path.relative_to(ROOT)}: '{module}' is not in the dependencies or the dev extra")
        for module in sorted(nested):
            if distribution_of(module) not in allowed | optional:
                missing.append(f"{path.relative_to(ROOT)}: '{module}' is in no dependency list")
    assert not missing, "\n".join(missing)


def test_the_check_sees_module_level_and_nested_imports(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text(textwrap.dedent("""
        import os
        import numpy as np
        from pipe_embed.pipeline.core import store
        try:
            import yaml
        except ImportError:
            yaml = None
        def f():
            import faiss
            from sentence_transformers import SentenceTransformer
    """))
    top, nested = third_party_imports(sample)
    assert top == {"numpy", "yaml"}
    assert nested == {"faiss", "sentence_transformers"}


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    """Import each module of the installed package in a subprocess (no test-suite state helps)."""
    from tests.test_layout import source_modules

    names = sorted(name for name in source_modules() if not name.endswith(".__main__"))  # __main__ runs the CLI
    script = textwrap.dedent("""
        import importlib, sys
        failed = []
        names = sys.argv[1:]
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        print(len(names))
        if failed:
            print("\\n".join(failed), file=sys.stderr)
            sys.exit(1)
    """)
    result = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, cwd="/",
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 40, result.stdout


def test_the_console_script_runs():
    exe = Path(sys.executable).with_name("pipe")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, cwd="/", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pipe ")
