"""Store upkeep: leftovers of dead runs (this host only), unreferenced artifacts, dry run vs apply."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from pipe_embed.pipeline.core import gc
from pipe_embed.pipeline.core.store import HOST, StageResult, Store
from tests.pipeline.core.test_store import _dead_pid


def _writer(text: str, extra_files: dict[str, str] | None = None):
    def build(work: Path) -> StageResult:
        (work / "out.jsonl").write_text(json.dumps({"text": text}) + "\n")
        for name, content in (extra_files or {}).items():
            (work / name).write_text(content)
        return StageResult()

    return build


def _run(store: Store, stage: str, config: dict, inputs=(), extra_files=None):
    art = store.run(stage=stage, format_version=1, config=config, inputs=list(inputs),
                    build=_writer(json.dumps(config), extra_files)).artifact
    time.sleep(0.005)  # finished times have millisecond resolution: keep "latest" unambiguous
    return art


def _leftover(stage_dir: Path, name: str, size: int = 1000) -> Path:
    path = stage_dir / name
    path.mkdir(parents=True)
    (path / "blob").write_bytes(b"x" * size)
    return path


def test_leftovers_of_dead_runs_on_this_host_are_removed_and_others_kept(store: Store):
    _run(store, "demo", {"k": 1})
    stage_dir = store.stage_dir("demo")
    dead = _dead_pid()
    stale_tmp = _leftover(stage_dir, f".tmp-aaa-{HOST}-{dead}-12345678", 1000)
    stale_old = _leftover(stage_dir, f".old-bbb-{HOST}-{dead}-12345678", 500)
    stale_del = _leftover(stage_dir, f".del-ccc-{HOST}-{dead}-12345678", 200)
    live = _leftover(stage_dir, f".tmp-ddd-{HOST}-{os.getpid()}-12345678")
    other = _leftover(stage_dir, f".tmp-eee-otherhost-{dead}-12345678")
    legacy = _leftover(stage_dir, f".tmp-fff-{dead}-12345678")

    todo = gc.plan(store)
    assert {i.path for i in todo.act} == {stale_tmp, stale_old, stale_del}
    assert {i.path for i in todo.kept} == {live, other, legacy}
    on_disk = sum(gc.dir_size(p) for p in (stale_tmp, stale_old, stale_del))  # what removing them frees
    assert todo.bytes == on_disk >= 1700
    assert all(p.exists() for p in (stale_tmp, stale_old, stale_del))  # planning deletes nothing

    done = gc.apply(store, todo)
    assert {i.path for i in done.removed} == {stale_tmp, stale_old, stale_del} and done.bytes == on_disk
    assert not any(p.exists() for p in (stale_tmp, stale_old, stale_del))
    assert live.exists() and other.exists() and legacy.exists()
    assert len(store.versions("demo")) == 1

    everything = gc.plan(store, any_host=True)
    assert {i.path for i in everything.act} == {other, legacy}  # the live one of this host stays


def test_work_dir_is_kept_while_its_lock_is_held(store: Store):
    art = _run(store, "demo", {"k": 1})
    work = _leftover(store.stage_dir("demo"), ".work-0123456789ab")
    lock = store.lock_path("demo", "0123456789ab")
    lock.write_text(f"{HOST} {os.getpid()}\n")
    with open(lock) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # a run holding it (another open file description conflicts)
        todo = gc.plan(store)
        assert [i.path for i in todo.kept] == [work] and "holds its lock" in todo.kept[0].reason
        fcntl.flock(fh, fcntl.LOCK_UN)
    todo = gc.plan(store)  # stopped: the user's paused run, kept unless asked
    assert [i.path for i in todo.kept] == [work] and "--resumable removes it" in todo.kept[0].reason
    todo = gc.plan(store, resumable=True)
    assert [i.path for i in todo.act] == [work]
    lock.write_text(f"otherhost {os.getpid()}\n")
    todo = gc.plan(store)
    assert [i.path for i in todo.kept] == [work] and "another host" in todo.kept[0].reason
    assert store.versions("demo")[0].version == art.version


def test_replaced_artifact_whose_new_copy_never_arrived_is_restored(store: Store):
    art = _run(store, "demo", {"k": 1})
    old = store.stage_dir("demo") / f".old-{art.version}-{HOST}-{_dead_pid()}-12345678"
    os.rename(art.path, old)  # a --force run killed between its two renames
    assert store.versions("demo") == []
    todo = gc.plan(store)
    assert [(i.path, i.action) for i in todo.act] == [(old, "restore")]
    gc.apply(store, todo)
    assert store.versions("demo")[0].version == art.version and not old.exists()


def test_unreferenced_artifacts_follow_inputs_and_named_refs(store: Store):
    compose_old = _run(store, "compose", {"v": 1})
    compose_new = _run(store, "compose", {"v": 2})  # compose@latest
    mine = _run(store, "mine", {"m": 1}, inputs=[compose_old])  # keeps compose_old alive
    train_round1 = _run(store, "train", {"t": 1}, inputs=[mine])  # named by ref in rounds.json
    train_round2 = _run(store, "train", {"t": 2}, inputs=[mine])  # named by path in rounds.json
    train_orphan = _run(store, "train", {"t": 3}, inputs=[mine])
    train_latest = _run(store, "train", {"t": 4}, inputs=[mine])
    rounds = {"rounds": [{"train": train_round1.ref}, {"model_path": f"{train_round2.path}/model"}]}
    iterate = _run(store, "iterate", {"i": 1}, inputs=[compose_new],
                   extra_files={"rounds.json": json.dumps(rounds)})
    assert gc.references(store, iterate) == {("compose", compose_new.version), ("train", train_round1.version),
                                             ("train", train_round2.version)}

    assert [a.ref for a in gc.unreferenced(store)] == [train_orphan.ref]
    assert gc.plan(store).act == []  # only on request
    live = _leftover(store.stage_dir("mine"), f".tmp-0123456789ab-{HOST}-{os.getpid()}-12345678")
    waiting = gc.plan(store, unreferenced_artifacts=True)  # a run in progress may read an unreferenced one
    assert waiting.act == [] and "a run may be using it" in waiting.kept[-1].reason
    shutil.rmtree(live)  # the run finished
    todo = gc.plan(store, unreferenced_artifacts=True)
    assert [i.path for i in todo.act] == [train_orphan.path] and todo.act[0].bytes > 0
    gc.apply(store, todo)
    remaining = {a.ref for stage in store.stages() for a in store.versions(stage)}
    assert remaining == {a.ref for a in (compose_old, compose_new, mine, train_round1, train_round2, train_latest,
                                         iterate)}
    assert not [p for p in store.stage_dir("train").iterdir() if p.name.startswith(".del-")]


def test_human_size():
    assert gc.human_size(0) == "0 B" and gc.human_size(1536) == "1.5 KB" and gc.human_size(3 * 1024**3) == "3.0 GB"


def test_pipe_gc_is_a_dry_run_with_sizes_until_yes(store: Store):
    from typer.testing import CliRunner

    from pipe_embed.pipeline.cli import app

    _run(store, "demo", {"k": 1})
    _run(store, "demo", {"k": 2})  # demo@latest: the first one is unreferenced
    stale = _leftover(store.stage_dir("demo"), f".tmp-abc-{HOST}-{_dead_pid()}-12345678", 2048)
    runner = CliRunner()
    dry = runner.invoke(app, ["gc", "--data-dir", str(store.root)])
    assert dry.exit_code == 0, dry.output
    assert f"remove {gc.human_size(gc.dir_size(stale)):>11}  {stale}  work dir of a dead run" in dry.stdout
    assert "dry run: nothing changed" in dry.stdout and stale.exists()
    done = runner.invoke(app, ["gc", "--unreferenced", "--yes", "--data-dir", str(store.root)])
    assert done.exit_code == 0, done.output
    assert "removed 2" in done.stdout and not stale.exists() and len(store.versions("demo")) == 1
    again = runner.invoke(app, ["gc", "--unreferenced", "--data-dir", str(store.root)])
    assert again.exit_code == 0 and "nothing to remove" in again.stdout


def test_sizes_are_what_removing_frees(store: Store):
    work = store.stage_dir("demo") / ".work-0123456789ab"
    work.mkdir(parents=True)
    with open(work / "sparse.bin", "wb") as fh:  # 1 GiB long, almost nothing on disk
        fh.truncate(1 << 30)
    (work / "data.bin").write_bytes(os.urandom(64 * 1024))
    os.link(work / "data.bin", work / "same.bin")  # a hard link frees nothing more
    [item] = gc.plan(store, resumable=True).act
    assert item.path == work and 64 * 1024 <= item.bytes < 1024 * 1024


def test_kept_leftovers_show_their_size(store: Store):
    _run(store, "demo", {"k": 1})
    other = _leftover(store.stage_dir("demo"), f".tmp-eee-otherhost-{_dead_pid()}-12345678", 5000)
    [kept] = gc.plan(store).kept
    assert kept.path == other and kept.bytes >= 5000


def test_removing_a_linked_artifact_leaves_no_del_link(store: Store, tmp_path: Path):
    kept = _run(store, "demo", {"k": 1})
    target = _run(store, "other", {"k": 2})
    link = store.stage_dir("demo") / "0123456789ab"
    shutil.copytree(kept.path, tmp_path / "copy")
    manifest = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    manifest["version"] = "0123456789ab"
    (tmp_path / "copy" / "manifest.json").write_text(json.dumps(manifest))
    shutil.move(str(tmp_path / "copy"), store.root / "copy")
    link.symlink_to(store.root / "copy", target_is_directory=True)  # inside the data dir: an artifact
    time.sleep(0.01)
    os.utime(kept.file("manifest.json"))  # demo@latest is the real one; the link is unreferenced
    todo = gc.plan(store, unreferenced_artifacts=True)
    assert link in [i.path for i in todo.act]
    done = gc.apply(store, todo)
    assert link in [i.path for i in done.removed] and not done.skipped
    assert not [p for p in store.stage_dir("demo").iterdir() if p.name.startswith(".del-")]
    assert (store.root / "copy").is_dir() and target.path.is_dir()  # a link is removed, never followed


def test_a_left_over_del_link_is_removed(store: Store, tmp_path: Path):
    _run(store, "demo", {"k": 1})
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("not the store's")
    link = store.stage_dir("demo") / f".del-0123456789ab-{HOST}-{_dead_pid()}-12345678"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    todo = gc.plan(store)
    assert [i.path for i in todo.act] == [link]
    gc.apply(store, todo)
    assert not os.path.lexists(link) and (tmp_path / "elsewhere" / "keep.txt").is_file()


def test_ls_and_gc_show_a_corrupt_artifact(store: Store):
    from typer.testing import CliRunner

    from pipe_embed.pipeline.cli import app

    good = _run(store, "demo", {"k": 1})
    bad = store.stage_dir("demo") / "0123456789ab"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    runner = CliRunner()
    listed = runner.invoke(app, ["ls", "--json", "--data-dir", str(store.root)])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["ref"] for r in rows] == [good.ref, "demo/0123456789ab"]
    assert "not valid JSON" in rows[1]["corrupt"]
    table = runner.invoke(app, ["ls", "--data-dir", str(store.root)])
    assert "demo/0123456789ab (corrupt)" in table.stdout
    planned = runner.invoke(app, ["gc", "--unreferenced", "--data-dir", str(store.root)])
    assert planned.exit_code == 0, planned.output
    assert f"{bad}  corrupt artifact: manifest.json is not valid JSON" in planned.stdout
    assert "nothing to remove" in planned.stdout  # shown, kept, and it blocks nothing
    assert bad.is_dir()


def test_ls_of_an_unknown_stage_names_the_known_ones(store: Store):
    from typer.testing import CliRunner

    from pipe_embed.pipeline.cli import app

    _run(store, "demo", {"k": 1})
    result = CliRunner().invoke(app, ["ls", "bogus", "--data-dir", str(store.root)])
    assert result.exit_code == 2
    assert "error: unknown stage 'bogus' — known stages: crawl, compose, mine" in result.stderr
    assert "demo" in result.stderr
    empty = CliRunner().invoke(app, ["ls", "mine", "--data-dir", str(store.root)])
    assert empty.exit_code == 0 and "no artifacts" in empty.stdout
