"""The artifact store: fingerprints, cache hits, force, crash safety, refs, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
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
    finite_json,
    git_commit,
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


# -- a read-only or full disk ---------------------------------------------------------------------

def test_a_cache_hit_is_served_from_a_read_only_store(store: Store, monkeypatch: pytest.MonkeyPatch):
    from tests.pipeline.read_only import refuse_writes

    first = _run(store, {"k": 1}, _writer("a"))
    refuse_writes(monkeypatch, store.root)
    again = _run(store, {"k": 1}, _writer("a"))  # no lock, no directory: nothing to write
    assert again.cached and again.artifact.version == first.artifact.version
    with pytest.raises(PipeError, match=r"the data dir is read-only, so the demo artifact cannot be written"):
        _run(store, {"k": 2}, _writer("b"))
    assert [a.version for a in store.versions("demo")] == [first.artifact.version]


def test_a_full_disk_is_one_line_and_leaves_nothing(store: Store):
    import errno

    def full(work: Path) -> StageResult:
        (work / "half.jsonl").write_text("{}\n")
        raise OSError(errno.ENOSPC, "No space left on device", str(work / "out.jsonl"))

    with pytest.raises(PipeError, match=r"out.jsonl: cannot write the demo artifact: No space left on device — "
                                        r"the disk is full"):
        _run(store, {"k": 1}, full)
    assert store.versions("demo") == []
    assert [p.name for p in store.stage_dir("demo").iterdir()] == [".locks"]


def test_a_file_where_the_stage_dir_belongs(store: Store):
    store.root.mkdir(parents=True)
    (store.root / "demo").write_text("not a directory")
    with pytest.raises(PipeError, match=r"demo: the demo stage dir is a file, not a directory"):
        _run(store, {"k": 1}, _writer("a"))


def test_an_empty_data_dir_is_refused():
    with pytest.raises(PipeError, match=r"the data dir is empty"):
        Store("")


# -- integrity ------------------------------------------------------------------------------------

def test_an_artifact_linked_from_outside_is_never_listed_shown_or_read(store: Store, tmp_path: Path):
    inside = _run(store, {"k": 1}, _writer("a")).artifact
    elsewhere = _manifest_dir(tmp_path / "elsewhere" / "demo" / "0123456789ab", "demo", "0123456789ab")
    (store.stage_dir("demo") / "0123456789ab").symlink_to(elsewhere, target_is_directory=True)
    (store.root / "linked").symlink_to(tmp_path / "elsewhere" / "demo", target_is_directory=True)
    assert [a.version for a in store.versions("demo")] == [inside.version]
    assert store.get("demo", "0123456789ab") is None and store.versions("linked") == []
    assert "linked" not in store.stage_names() and store.stages() == ["demo"]
    with pytest.raises(PipeError, match="no 'demo' version starts with '0123'"):
        store.resolve("demo@0123")
    with pytest.raises(PipeError, match="outside the data dir"):
        store.resolve(str(store.stage_dir("demo") / "0123456789ab"))


def test_a_tampered_input_is_refused_before_the_stage_runs(store: Store):
    parent = store.run(stage="compose", format_version=1, config={}, inputs=[], build=_writer("p")).artifact
    calls: list[int] = []
    _run(store, {"k": 1}, _writer("c", calls), inputs=[parent])  # as written: trusted by size + mtime
    path = parent.file("out.jsonl")
    text = path.read_text()
    path.write_text(text.replace('"p"', '"q"'))  # same size, new content, new mtime
    with pytest.raises(PipeError, match=r"compose@\w+: out.jsonl does not match the sha256 its manifest lists"):
        _run(store, {"k": 2}, _writer("c", calls), inputs=[parent])
    path.write_text(text + "more\n")
    with pytest.raises(PipeError, match=r"out.jsonl has \d+ bytes where the manifest lists \d+"):
        _run(store, {"k": 2}, _writer("c", calls), inputs=[parent])
    path.unlink()
    with pytest.raises(PipeError, match=r"out.jsonl is missing"):
        _run(store, {"k": 2}, _writer("c", calls), inputs=[parent])
    path.write_text(text)  # the same bytes again (a new mtime): the full hash agrees
    _run(store, {"k": 2}, _writer("c", calls), inputs=[parent])
    assert len(calls) == 2 and len(store.versions("demo")) == 2


def test_the_fast_check_trusts_size_and_mtime_and_hashes_otherwise(store: Store, monkeypatch: pytest.MonkeyPatch):
    from pipe_embed.pipeline.core import store as store_module

    art = _run(store, {"k": 1}, _writer("a")).artifact
    entry = art.manifest["files"]["out.jsonl"]
    assert entry["mtime_ns"] == art.file("out.jsonl").stat().st_mtime_ns
    hashed: list[Path] = []
    real = store_module.hash_file
    monkeypatch.setattr(store_module, "hash_file", lambda p: hashed.append(Path(p)) or real(p))
    store.verify(art)
    assert hashed == []
    os.utime(art.file("out.jsonl"), ns=(entry["mtime_ns"] + 10**9, entry["mtime_ns"] + 10**9))
    store.verify(art)
    assert hashed == [art.file("out.jsonl")]


def test_latest_follows_the_store_record_not_the_finished_claim(store: Store):
    old = _run(store, {"k": 1}, _writer("a")).artifact
    manifest = json.loads(old.file(MANIFEST).read_text())
    manifest["finished"] = "2099-01-01T00:00:00.000+00:00"
    old.file(MANIFEST).write_text(json.dumps(manifest))
    past = time.time() - 3600
    os.utime(old.file(MANIFEST), (past, past))  # the store wrote it an hour ago, whatever it claims
    new = _run(store, {"k": 2}, _writer("b")).artifact
    assert store.resolve("demo@latest").version == new.version
    from pipe_embed.pipeline.core.listing import artifact_rows

    assert [r["ref"] for r in artifact_rows(store)] == [new.ref, old.ref]


@pytest.mark.parametrize("content, why", [
    ("{broken", "manifest.json is not valid JSON (line 1"),
    ("[1, 2]", "manifest.json is not a JSON object"),
    (b"\xff\xfe", "manifest.json is not UTF-8 text"),
    ('{"stage": "demo", "version": "ffffffffffff"}', "manifest.json names demo@ffffffffffff"),
])
def test_a_corrupt_manifest_is_reported_not_invisible(store: Store, content: str | bytes, why: str):
    good = _run(store, {"k": 1}, _writer("a")).artifact
    bad = store.stage_dir("demo") / "0123456789ab"
    bad.mkdir()
    (bad / MANIFEST).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert [a.version for a in store.versions("demo")] == [good.version]
    [(path, reason)] = store.corrupt("demo")
    assert path == bad and why in reason
    with pytest.raises(PipeError, match="a corrupt artifact"):
        store.resolve(str(bad))
    from pipe_embed.pipeline.core.listing import artifact_rows

    rows = artifact_rows(store)
    assert rows[0]["ref"] == good.ref and rows[-1]["ref"] == "demo/0123456789ab" and why in rows[-1]["corrupt"]


def test_only_corrupt_artifacts_say_so(store: Store):
    bad = store.stage_dir("demo") / "0123456789ab"
    bad.mkdir(parents=True)
    (bad / MANIFEST).write_text("{")
    with pytest.raises(PipeError, match=r"no readable 'demo' artifact .*0123456789ab is corrupt"):
        store.resolve("demo@latest")


def test_a_missing_path_ref_says_so(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipeError, match=r"^in/x: no such file or directory"):
        store.resolve("in/x")
    with pytest.raises(PipeError, match=r"^x\.csv: not a stage name, and no such file or directory"):
        store.resolve("x.csv")
    (tmp_path / "in").mkdir()
    with pytest.raises(PipeError, match=r"^\./in: a directory outside the data dir"):
        store.resolve("./in")


def test_the_manifest_is_strict_json(store: Store):
    def build(work: Path) -> StageResult:
        (work / "out.jsonl").write_text("{}\n")
        return StageResult(stats={"mean": float("nan")}, metrics={"mrr@10": float("inf"), "ok": 0.5})

    art = _run(store, {"k": 1}, build).artifact
    text = art.file(MANIFEST).read_text()
    assert "NaN" not in text and "Infinity" not in text
    manifest = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in the manifest"))
    assert manifest["stats"]["mean"] is None and manifest["metrics"] == {"mrr@10": None, "ok": 0.5}


def test_finite_json_writes_undefined_numbers_as_null():
    text = finite_json({"mean": float("nan"), "scores": [float("inf"), -float("inf"), 0.5], "name": "é"})
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name}")) == {
        "mean": None, "scores": [None, None, 0.5], "name": "é"}
    assert text.endswith("}\n") and text.isascii()


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "init.defaultBranch=main", *args], capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_manifest_records_the_commit_of_the_checkout_pipe_runs_from(store: Store, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    import pipe_embed.pipeline.core.store as store_module

    source = Path(store_module.__file__).resolve()
    head = _git(source.parent, "rev-parse", "HEAD")
    if head.returncode != 0 or _git(source.parent, "ls-files", "--error-unmatch", source.name).returncode != 0:
        pytest.skip("pipe runs from an installed copy, not from a git checkout")
    monkeypatch.chdir(tmp_path)  # the commit is the code's, wherever the run starts
    art = _run(store, {"k": 1}, _writer("a")).artifact
    assert art.manifest["git_commit"] == head.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_no_commit_outside_a_checkout_or_for_a_file_it_does_not_track(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # whatever holds tmp_path is not searched
    outside = tmp_path / "outside" / "store.py"
    outside.parent.mkdir()
    outside.write_text("")
    assert git_commit(outside) is None
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "tracked.py").write_text("")
    (repo / "copied.py").write_text("")  # e.g. an installed copy inside another project's tree
    for args in (("init", "-q"), ("add", "tracked.py"), ("commit", "-q", "-m", "one")):
        assert _git(repo, *args).returncode == 0
    assert git_commit(repo / "tracked.py") == _git(repo, "rev-parse", "HEAD").stdout.strip()
    assert git_commit(repo / "copied.py") is None
