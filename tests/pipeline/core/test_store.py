"""The artifact store: fingerprints, cache hits, force, crash safety, refs, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.store import (
    HOST,
    MANIFEST,
    Artifact,
    StageResult,
    Store,
    fingerprint,
    parse_temp_name,
    temp_name,
)


def _writer(text: str, calls: list[int] | None = None):
    def build(work: Path) -> StageResult:
        if calls is not None:
            calls.append(1)
        (work / "out.jsonl").write_text(json.dumps({"text": text}) + "\n")
        return StageResult(stats={"rows": 1}, headline={"rows": 1})

    return build


def _run(store: Store, config: dict, build, inputs=(), force=False, extra=None):
    return store.run(stage="demo", format_version=1, config=config, inputs=list(inputs),
                     build=build, force=force, extra=extra)


def test_fingerprint_is_stable_and_sensitive():
    base = fingerprint("demo", 1, {"a": 1, "b": [1, 2]}, [], {"x": "y"})
    assert base == fingerprint("demo", 1, {"b": [1, 2], "a": 1}, [], {"x": "y"})  # key order
    assert len(base) == 12
    assert base != fingerprint("demo", 2, {"a": 1, "b": [1, 2]}, [], {"x": "y"})
    assert base != fingerprint("other", 1, {"a": 1, "b": [1, 2]}, [], {"x": "y"})
    assert base != fingerprint("demo", 1, {"a": 2, "b": [1, 2]}, [], {"x": "y"})
    assert base != fingerprint("demo", 1, {"a": 1, "b": [1, 2]}, [], {"x": "z"})
    parent = Artifact("compose", "abc", Path("."), {})
    assert base != fingerprint("demo", 1, {"a": 1, "b": [1, 2]}, [parent], {"x": "y"})


def test_run_writes_manifest_and_cache_hit(store: Store):
    calls: list[int] = []
    first = _run(store, {"k": 1}, _writer("a", calls))
    assert not first.cached
    manifest = json.loads((first.artifact.path / MANIFEST).read_text())
    assert manifest["stage"] == "demo" and manifest["version"] == first.artifact.version
    assert manifest["files"]["out.jsonl"]["rows"] == 1
    assert len(manifest["files"]["out.jsonl"]["sha256"]) == 64
    assert manifest["config"] == {"k": 1}
    assert manifest["stats"] == {"rows": 1}
    for key in ("schema_version", "created", "finished", "package_version", "inputs", "metrics"):
        assert key in manifest
    second = _run(store, {"k": 1}, _writer("a", calls))
    assert second.cached and second.artifact.version == first.artifact.version
    assert len(calls) == 1
    third = _run(store, {"k": 2}, _writer("a", calls))
    assert third.artifact.version != first.artifact.version and len(calls) == 2


def test_force_recomputes_in_place(store: Store):
    calls: list[int] = []
    first = _run(store, {"k": 1}, _writer("a", calls))
    again = _run(store, {"k": 1}, _writer("b", calls), force=True)
    assert not again.cached and len(calls) == 2
    assert again.artifact.path == first.artifact.path
    assert "b" in (again.artifact.path / "out.jsonl").read_text()
    assert [p.name for p in store.stage_dir("demo").iterdir() if not p.name.startswith(".")] == [
        first.artifact.version]


def test_crash_leaves_no_artifact(store: Store):
    def broken(work: Path) -> StageResult:
        (work / "half.jsonl").write_text('{"x": 1}\n')
        raise RuntimeError("boom in the middle")

    with pytest.raises(RuntimeError):
        _run(store, {"k": 1}, broken)
    assert store.versions("demo") == []
    leftovers = [p for p in store.stage_dir("demo").iterdir() if p.name != ".locks"]
    assert leftovers == []


def test_directory_without_manifest_is_not_an_artifact(store: Store):
    (store.stage_dir("demo") / "deadbeef0000").mkdir(parents=True)
    (store.stage_dir("demo") / "deadbeef0000" / "out.jsonl").write_text("{}\n")
    assert store.versions("demo") == []
    with pytest.raises(PipeError):
        store.resolve("demo@latest")


def test_ref_resolution(store: Store):
    a = _run(store, {"k": 1}, _writer("a")).artifact
    time.sleep(0.01)  # finished times have millisecond resolution
    b = _run(store, {"k": 2}, _writer("b")).artifact
    assert store.resolve("demo@latest").version == b.version
    assert store.resolve("demo").version == b.version
    assert store.resolve(f"demo@{a.version[:6]}").version == a.version
    assert store.resolve(str(a.path)).version == a.version
    with pytest.raises(PipeError, match="no 'demo' version starts with"):
        store.resolve("demo@zzzz")
    with pytest.raises(PipeError, match="no 'nothing' artifact"):
        store.resolve("nothing@latest")
    with pytest.raises(PipeError, match="expected a 'compose' artifact"):
        store.resolve("demo@latest", stage="compose")


def test_ambiguous_prefix(store: Store):
    arts = [_run(store, {"k": i}, _writer(str(i))).artifact for i in range(40)]
    first_chars = {}
    for art in arts:
        first_chars.setdefault(art.version[0], []).append(art)
    prefix = next(k for k, v in first_chars.items() if len(v) > 1)
    with pytest.raises(PipeError, match="matches several versions"):
        store.resolve(f"demo@{prefix}")


def test_upstream_follows_lineage(store: Store):
    parent = store.run(stage="compose", format_version=1, config={}, inputs=[],
                       build=_writer("p")).artifact
    child = _run(store, {"k": 1}, _writer("c"), inputs=[parent]).artifact
    grandchild = store.run(stage="train", format_version=1, config={}, inputs=[child],
                           build=_writer("g")).artifact
    assert store.upstream(grandchild, "compose").version == parent.version
    assert store.upstream(grandchild, "crawl") is None


def _concurrent_writer(root: str, text: str, barrier) -> str:
    store = Store(root)
    barrier.wait()

    def build(work: Path) -> StageResult:
        for i in range(200):
            with open(work / "out.jsonl", "a") as fh:
                fh.write(json.dumps({"i": i, "by": text}) + "\n")
        return StageResult(stats={"by": text})

    outcome = store.run(stage="demo", format_version=1, config={"same": True}, inputs=[], build=build)
    return f"{outcome.artifact.version}:{outcome.cached}"


def test_two_concurrent_writers_do_not_corrupt(tmp_path: Path):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        results = pool.starmap(_concurrent_writer, [(str(tmp_path), "one", barrier),
                                                   (str(tmp_path), "two", barrier)])
    versions = {r.split(":")[0] for r in results}
    cached = sorted(r.split(":")[1] for r in results)
    assert len(versions) == 1 and cached == ["False", "True"]
    store = Store(tmp_path)
    [artifact] = store.versions("demo")
    lines = (artifact.path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 200 and len({json.loads(line)["by"] for line in lines}) == 1
    assert not [p for p in store.stage_dir("demo").iterdir() if p.name.startswith(".tmp")]


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_stale_tmp_of_dead_process_is_cleaned_on_its_own_host_only(store: Store):
    stage_dir = store.stage_dir("demo")
    stage_dir.mkdir(parents=True)
    pid = _dead_pid()
    stale = stage_dir / f".tmp-abc-{HOST}-{pid}-deadbeef"
    live = stage_dir / f".tmp-abc-{HOST}-{os.getpid()}-deadbeef"
    other_host = stage_dir / f".tmp-abc-otherhost-{pid}-deadbeef"
    legacy = stage_dir / f".tmp-abc-{pid}-deadbeef"  # no host: cannot tell whose it is
    for path in (stale, live, other_host, legacy):
        path.mkdir()
    _run(store, {"k": 1}, _writer("a"))
    assert not stale.exists()
    assert live.exists() and other_host.exists() and legacy.exists()


def test_temp_names_carry_host_and_pid(store: Store):
    seen: list[str] = []

    def build(work: Path) -> StageResult:
        seen.append(work.name)
        return _writer("a")(work)

    _run(store, {"k": 1}, build)
    entry = parse_temp_name(seen[0])
    assert entry is not None and entry.kind == ".tmp" and entry.host == HOST and entry.pid == os.getpid()
    assert "-" not in HOST
    assert parse_temp_name(temp_name(".old", "abc123")).kind == ".old"
    assert parse_temp_name(".locks") is None and parse_temp_name(".tmp-abc-host-notapid-x") is None
    holder = store.lock_path("demo", store.versions("demo")[0].version).read_text().split()
    assert holder == [HOST, str(os.getpid())]


def test_resumable_workdir_survives_failure(store: Store):
    attempts: list[bool] = []

    def build(work: Path) -> StageResult:
        resumed = (work / "checkpoint").exists()
        attempts.append(resumed)
        (work / "checkpoint").write_text("step 5")
        if not resumed:
            raise KeyboardInterrupt
        return StageResult()

    with pytest.raises(KeyboardInterrupt):
        store.run(stage="demo", format_version=1, config={}, inputs=[], build=build, resumable=True)
    assert store.versions("demo") == []
    store.run(stage="demo", format_version=1, config={}, inputs=[], build=build, resumable=True)
    assert attempts == [False, True]
    assert len(store.versions("demo")) == 1


# -- refs stay inside the store ------------------------------------------------------------------

def _manifest_dir(path: Path, stage: str, version: str) -> Path:
    path.mkdir(parents=True)
    (path / MANIFEST).write_text(json.dumps({"stage": stage, "version": version, "finished": "x"}))
    return path


def test_refs_never_resolve_outside_the_data_dir(store: Store, tmp_path: Path, monkeypatch):
    inside = _run(store, {"k": 1}, _writer("a")).artifact
    _manifest_dir(tmp_path / "outside" / "demo" / "abc", "demo", "abc")
    _manifest_dir(tmp_path / "demo" / "abc", "demo", "abc")  # a sibling of the data dir
    monkeypatch.chdir(store.root)
    for ref in ("../outside/demo@latest", "..@latest", "../demo@latest", "/etc@latest", "demo/..@latest",
                "./demo@latest"):
        with pytest.raises(PipeError, match="is not a stage name"):
            store.resolve(ref)
    for ref in ("../outside/demo/abc", str(tmp_path / "demo" / "abc"), "..", "../demo/abc"):
        with pytest.raises(PipeError, match="outside the data dir"):
            store.resolve(ref)
    (store.root / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(PipeError, match="outside the data dir"):
        store.resolve("link/demo/abc")
    for ref in (".", "./demo", f"demo/{inside.version}/out.jsonl"):
        with pytest.raises(PipeError, match="not an artifact directory"):
            store.resolve(ref)
    assert store.resolve(f"demo/{inside.version}").version == inside.version
    assert store.resolve(f"./demo/{inside.version}").path == inside.path
    assert store.get("..", "demo") is None and store.get("demo", "../demo") is None
    with pytest.raises(PipeError, match="not a stage name"):
        store.versions("../outside")


@pytest.mark.parametrize("ref, message", [
    ("demo@", r"demo@: give a version after '@' — demo@latest or demo@<version prefix>"),
    ("@latest", r"@latest: give a stage before '@'"),
    ("demo@../x", r"'../x' is not a version"),
    ("", "empty artifact reference"),
    ("nothing@latest", r"no 'nothing' artifact in .* — 'nothing' is no stage here"),
    ("mine@latest", r"no 'mine' artifact in .* — run `pipe mine` first"),
])
def test_ref_syntax_errors_say_what_to_write(store: Store, ref: str, message: str):
    with pytest.raises(PipeError, match=message):
        store.resolve(ref)


def test_data_dir_that_is_a_file(tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(PipeError, match="the data dir is a file, not a directory"):
        Store(afile)
    with pytest.raises(PipeError, match="the data dir lies under a file"):
        Store(afile / "data")
    Store(tmp_path / "new" / "data")  # missing: fine, created on the first run
