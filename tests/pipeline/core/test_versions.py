"""Versions: a change to a stage's own code re-runs it; `versioned=False` fields never do."""

from __future__ import annotations

import importlib
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.config import option, versioned_dict
from pipe_embed.pipeline.core.hashing import code_modules, code_version
from pipe_embed.pipeline.core.store import Store


@dataclass
class ToyConfig:
    size: int = option(3, "Changes the output.")
    batch_size: int = option(64, "Only changes the speed.", versioned=False)


STAGE_SOURCE = '''
from pathlib import Path
from pipe_embed.pipeline.core.store import StageResult

def build(work: Path) -> StageResult:
    (work / "out.txt").write_text("{body}")
    return StageResult()
'''


@pytest.fixture()
def toy_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A package `toystage` with a `stage` module whose source the test can change."""
    package = tmp_path / "src" / "toystage"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))

    def load(body: str):
        (package / "stage.py").write_text(STAGE_SOURCE.format(body=body))
        for name in ("toystage.stage", "toystage"):
            sys.modules.pop(name, None)
        code_version.cache_clear()
        importlib.invalidate_caches()
        return importlib.import_module("toystage.stage")

    yield package, load
    for name in ("toystage.stage", "toystage"):
        sys.modules.pop(name, None)
    code_version.cache_clear()


def test_code_modules_names_the_stage_package():
    assert code_modules("pipe_embed.mining.stage") == "pipe_embed.mining"
    assert code_modules("pipe_embed.pipeline.compose.stage") == "pipe_embed.pipeline.compose"
    assert code_modules("pipe_embed.pipeline.orchestrate.iterate") == "pipe_embed.pipeline.orchestrate.iterate"


@pytest.fixture()
def toy_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A package `toyroot` with a core (one module the stage imports lazily, one it never imports)
    and a stage package."""
    root = tmp_path / "src2" / "toyroot"
    for folder in ("", "core", "stagepkg"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "__init__.py").write_text("")
    (root / "core" / "used.py").write_text("X = 1\n")
    (root / "core" / "unused.py").write_text("Y = 1\n")
    (root / "stagepkg" / "stage.py").write_text(
        "def build():\n    from toyroot.core.used import X\n    return X\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src2"))
    importlib.invalidate_caches()
    code_version.cache_clear()
    yield root
    for name in [n for n in sys.modules if n.startswith("toyroot")]:
        sys.modules.pop(name, None)
    code_version.cache_clear()


def test_a_change_to_a_core_module_the_stage_imports_changes_its_version(toy_tree: Path):
    before = code_version("toyroot.stagepkg")
    (toy_tree / "core" / "unused.py").write_text("Y = 2\n")
    code_version.cache_clear()
    assert code_version("toyroot.stagepkg") == before, "a module the stage never imports must not count"
    (toy_tree / "core" / "used.py").write_text("X = 2\n")
    code_version.cache_clear()
    assert code_version("toyroot.stagepkg") != before, "a core module imported inside a function counts"


def test_real_stages_hash_the_core_they_use_and_not_other_stages():
    from pipe_embed.pipeline.core.imports import import_closure

    mine = import_closure(["pipe_embed.mining.stage"], "pipe_embed")
    assert "pipe_embed.pipeline.core.store" in mine and "pipe_embed.pipeline.core.pairs" in mine
    assert not any(name.startswith(("pipe_embed.crawlers", "pipe_embed.training")) for name in mine)
    train = import_closure(["pipe_embed.training.train"], "pipe_embed")
    assert "pipe_embed.pipeline.core.models" in train
    assert not any(name.startswith("pipe_embed.mining") for name in train)


def test_a_change_to_the_stage_code_changes_the_version(tmp_path: Path, toy_stage):
    package, load = toy_stage
    store = Store(tmp_path / "data")
    first = store.run(stage="toy", format_version=1, config=ToyConfig(), inputs=[], build=load("v1").build)
    again = store.run(stage="toy", format_version=1, config=ToyConfig(), inputs=[], build=load("v1").build)
    assert again.cached and again.artifact.version == first.artifact.version
    changed = store.run(stage="toy", format_version=1, config=ToyConfig(), inputs=[], build=load("v2").build)
    assert not changed.cached and changed.artifact.version != first.artifact.version
    assert changed.artifact.file("out.txt").read_text() == "v2"
    assert changed.artifact.manifest["code_version"] == code_version("toystage")
    # any module of the stage's package counts, not only the one defining build
    (package / "helpers.py").write_text("X = 2\n")
    helper_changed = store.run(stage="toy", format_version=1, config=ToyConfig(), inputs=[], build=load("v2").build)
    assert helper_changed.artifact.version not in (first.artifact.version, changed.artifact.version)


def test_unversioned_fields_stay_out_of_the_version_but_in_the_manifest(tmp_path: Path, toy_stage):
    _, load = toy_stage
    build = load("same").build
    store = Store(tmp_path / "data")
    first = store.run(stage="toy", format_version=1, config=ToyConfig(batch_size=64), inputs=[], build=build)
    faster = store.run(stage="toy", format_version=1, config=ToyConfig(batch_size=8), inputs=[], build=build)
    assert faster.cached and faster.artifact.version == first.artifact.version
    other = store.run(stage="toy", format_version=1, config=ToyConfig(size=4), inputs=[], build=build)
    assert other.artifact.version != first.artifact.version
    assert first.artifact.config == {"size": 3, "batch_size": 64}
    assert versioned_dict(ToyConfig()) == {"size": 3}


def test_pipe_stage_configs_mark_their_operational_fields():
    from pipe_embed.mining.stage import MineConfig

    mine = versioned_dict(MineConfig())
    assert "batch_size" not in mine and "search_batch_size" not in mine and "num_negatives" in mine


def test_code_version_reads_every_module_of_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "pkgx"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(textwrap.dedent("A = 1\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    code_version.cache_clear()
    before = code_version("pkgx")
    (package / "b.py").write_text("B = 1\n")
    code_version.cache_clear()
    assert code_version("pkgx") != before
    code_version.cache_clear()
