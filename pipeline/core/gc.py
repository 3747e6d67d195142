"""Store upkeep: find what dead runs left in the store (and, on request, artifacts nothing refers
to) and remove it; a plan first (sizes shown), deletion only when asked.

Leftovers are hidden siblings of artifacts: `.tmp-<version>-<host>-<pid>-<rand>` (a run's work dir),
`.old-…` (an artifact being replaced by `--force`), `.del-…` (an artifact being deleted by gc) and
`.work-<version>` (a resumable run's work dir; its host and pid are in `.locks/<version>.lock`; a
stopped one is the user's paused run, so it stays unless `resumable` says to remove it too). Only
leftovers of this host whose process is gone are removed: another machine's run on a shared store
cannot be checked from here, so its directories stay unless `any_host` says no other machine runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipe_embed.pipeline.core.store import (
    HOST,
    MANIFEST,
    VERSION_LENGTH,
    Artifact,
    Store,
    TempName,
    parse_temp_name,
    pid_alive,
    temp_name,
    valid_stage_name,
)

_HEX = f"[0-9a-f]{{{VERSION_LENGTH}}}"
_REF = re.compile(rf"([A-Za-z0-9_][A-Za-z0-9_-]*)@({_HEX})\b")
_PATH = re.compile(rf"(?:^|[/\\\"])([A-Za-z0-9_][A-Za-z0-9_-]*)[/\\]({_HEX})(?=[/\\\"]|$)", re.MULTILINE)
_SCANNED_BYTES = 4 * 1024 * 1024  # top-level JSON files up to this size are searched for references


@dataclass(frozen=True)
class Item:
    """One directory gc would remove (or restore), or keeps and says why."""

    path: Path
    kind: str  # "tmp", "old", "del", "work", "artifact" or "corrupt" (always kept: shown, never deleted)
    reason: str
    bytes: int = 0
    action: str = "delete"  # "delete", "restore" (a replaced artifact whose new copy never arrived) or "keep"


@dataclass
class Plan:
    """What `gc` would do: items to act on and leftovers it keeps."""

    act: list[Item] = field(default_factory=list)
    kept: list[Item] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.act if item.action == "delete")


@dataclass
class Outcome:
    """What `apply` did."""

    removed: list[Item] = field(default_factory=list)
    restored: list[Item] = field(default_factory=list)
    skipped: list[tuple[Item, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.removed)


def _disk_bytes(path: str, seen: set[tuple[int, int]]) -> int:
    """Bytes one directory entry takes on disk (allocated blocks; a hard-linked file counted once)."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return 0
    seen.add(key)
    blocks = getattr(info, "st_blocks", None)
    return blocks * 512 if blocks is not None else info.st_size


def dir_size(path: Path) -> int:
    """Bytes a directory really takes on disk, what removing it frees (like `du`: allocated blocks,
    so a sparse file counts what it holds; hard links once; links not followed)."""
    seen: set[tuple[int, int]] = set()
    if path.is_symlink():
        return _disk_bytes(str(path), seen)
    total = _disk_bytes(str(path), seen)
    for base, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            total += _disk_bytes(os.path.join(base, name), seen)
    return total


def human_size(n: int) -> str:
    """1536 -> '1.5 KB'."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@contextlib.contextmanager
def try_lock(store: Store, stage: str, version: str) -> Iterator[bool]:
    """Hold a version's lock if nobody else does (True), without waiting; False while a run holds it."""
    path = store.lock_path(stage, version)
    if not path.is_file():
        yield True
        return
    with open(path, encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def last_holder(store: Store, stage: str, version: str) -> tuple[str | None, int | None]:
    """Host and pid of the last run that held a version's lock (None, None when unknown)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = store.lock_path(stage, version).read_text(encoding="utf-8").split()
        if len(text) == 2 and text[1].isdigit():
            return text[0], int(text[1])
    return None, None


def _stage_dirs(store: Store) -> list[Path]:
    if not store.root.is_dir():
        return []
    return sorted(d for d in store.root.iterdir() if d.is_dir() and valid_stage_name(d.name) and store.inside(d))


def _owner_gone(host: str | None, pid: int | None, any_host: bool) -> tuple[bool, str]:
    """Whether the run that owned a leftover is gone, and the words that say whose it was."""
    who = f"host {host} pid {pid}" if host else (f"pid {pid}, host unknown" if pid else "owner unknown")
    if host == HOST:
        return (pid is None or not pid_alive(pid)), who
    return any_host, who


def _leftover(store: Store, stage: str, path: Path, any_host: bool, resumable: bool = False) -> Item | None:
    """How gc treats one hidden directory of a stage dir (None: not one of its leftovers)."""
    if path.name.startswith(".work-"):
        version = path.name[len(".work-"):]
        host, pid = last_holder(store, stage, version)
        who = f"last run: host {host} pid {pid}" if host else "no run recorded"
        with try_lock(store, stage, version) as free:
            if not free:
                return Item(path, "work", f"a run holds its lock ({who})", dir_size(path), action="keep")
        if host not in (None, HOST) and not any_host:
            return Item(path, "work", f"resumable work of another host ({who}); --any-host removes it",
                        dir_size(path), action="keep")
        if not resumable:
            return Item(path, "work", f"a stopped run that resumes where it stopped when rerun ({who}); "
                        "--resumable removes it", dir_size(path), action="keep")
        return Item(path, "work", f"work dir of a stopped resumable run ({who}); a rerun starts over",
                    dir_size(path))
    entry: TempName | None = parse_temp_name(path.name)
    if entry is None:
        return None
    kind = entry.kind.lstrip(".")
    gone, who = _owner_gone(entry.host, entry.pid, any_host)
    if entry.host is None and not any_host:
        return Item(path, kind, f"name without a host ({who}); --any-host removes it", dir_size(path),
                    action="keep")
    if not gone:
        if entry.host == HOST:
            return Item(path, kind, f"its run is alive ({who})", dir_size(path), action="keep")
        return Item(path, kind, f"another host's run ({who}); --any-host removes it", dir_size(path),
                    action="keep")
    if kind == "old" and not (path.parent / entry.version).exists() and (path / MANIFEST).is_file():
        return Item(path, kind, f"artifact {stage}@{entry.version} was being replaced and its new copy "
                    f"never arrived ({who}): put back", dir_size(path), action="restore")
    reason = {"tmp": "work dir of a dead run", "old": "replaced artifact", "del": "half-deleted artifact"}[kind]
    return Item(path, kind, f"{reason} ({who})", dir_size(path))


def references(store: Store, artifact: Artifact) -> set[tuple[str, str]]:
    """(stage, version) of every artifact this one refers to: its inputs, and any `stage@version` or
    `<stage>/<version>` path named in its manifest or its small top-level JSON files (an iterate
    artifact names its rounds' artifacts in rounds.json)."""
    found = {(str(i.get("stage")), str(i.get("version"))) for i in artifact.inputs if isinstance(i, dict)}
    texts = [json.dumps(artifact.manifest, ensure_ascii=False)]
    with contextlib.suppress(OSError):
        for path in artifact.path.iterdir():
            if path.suffix == ".json" and path.name != MANIFEST and path.is_file() \
                    and path.stat().st_size <= _SCANNED_BYTES:
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    texts.append(path.read_text(encoding="utf-8"))
    for text in texts:
        found.update(_REF.findall(text))
        found.update(_PATH.findall(text))
    found.discard((artifact.stage, artifact.version))
    return found


def unreferenced(store: Store) -> list[Artifact]:
    """Artifacts no `<stage>@latest` leads to, following references (inputs, named refs) from each latest."""
    everything = {(a.stage, a.version): a for stage in store.stages() for a in store.versions(stage)}
    roots = [store.versions(stage)[0] for stage in store.stages()]
    seen = {(a.stage, a.version) for a in roots}
    queue = deque(roots)
    while queue:
        for key in references(store, queue.popleft()):
            if key in everything and key not in seen:
                seen.add(key)
                queue.append(everything[key])
    return sorted((a for key, a in everything.items() if key not in seen), key=lambda a: (a.stage, a.version))


def plan(store: Store, *, unreferenced_artifacts: bool = False, any_host: bool = False,
         resumable: bool = False) -> Plan:
    """What gc would remove: leftovers of dead runs, and with `unreferenced_artifacts` old artifacts
    (none while a run may be in progress: it could be reading one that nothing refers to yet)."""
    result = Plan()
    for stage_dir in _stage_dirs(store):
        for path in sorted(stage_dir.iterdir()):
            if not path.name.startswith(".") or not (path.is_dir() or path.is_symlink()):
                continue
            item = _leftover(store, stage_dir.name, path, any_host, resumable)
            if item is not None:
                (result.kept if item.action == "keep" else result.act).append(item)
        for path, why in store.corrupt(stage_dir.name):
            result.kept.append(Item(path, "corrupt", f"corrupt artifact: {why}; not an artifact any more: rerun "
                                    f"`pipe {stage_dir.name} --force` or remove it by hand", dir_size(path),
                                    action="keep"))
    if unreferenced_artifacts:
        # A run in progress may be reading an artifact that nothing refers to yet: wait for it.
        busy = next((item for item in result.kept if item.kind != "corrupt"), None)
        for artifact in unreferenced(store):
            if busy is not None:
                result.kept.append(Item(artifact.path, "artifact", f"{artifact.ref}: unreferenced, but a run "
                                        f"may be using it ({busy.path.name}: {busy.reason})", action="keep"))
                continue
            with try_lock(store, artifact.stage, artifact.version) as free:
                if not free:
                    result.kept.append(Item(artifact.path, "artifact", f"{artifact.ref}: a run holds its lock",
                                            action="keep"))
                    continue
            result.act.append(Item(artifact.path, "artifact",
                                   f"{artifact.ref}: no {artifact.stage}@latest and no other artifact refers to it",
                                   dir_size(artifact.path)))
    return result


def _remove(path: Path) -> None:
    """Delete a leftover: a symlink itself (never what it points at), else the directory tree."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)


def _version_of(item: Item) -> str:
    if item.kind == "artifact":
        return item.path.name
    if item.kind == "work":
        return item.path.name[len(".work-"):]
    entry = parse_temp_name(item.path.name)
    return entry.version if entry else ""


def apply(store: Store, todo: Plan) -> Outcome:
    """Carry out a plan: each item under its version's lock (skipped when a run took it meanwhile).

    An artifact is first renamed to a hidden `.del-…` name, so it stops being an artifact at once and
    a gc killed halfway leaves a leftover the next gc removes.
    """
    outcome = Outcome()
    for item in todo.act:
        stage = item.path.parent.name
        with try_lock(store, stage, _version_of(item)) as free:
            if not free:
                outcome.skipped.append((item, "a run took its lock"))
                continue
            if not os.path.lexists(item.path):
                outcome.skipped.append((item, "already gone"))
                continue
            try:
                if item.action == "restore":
                    final = item.path.parent / _version_of(item)
                    if final.exists():
                        outcome.skipped.append((item, f"{final.name} exists again"))
                        continue
                    os.rename(item.path, final)
                    outcome.restored.append(item)
                    continue
                target = item.path
                if item.kind == "artifact":
                    target = item.path.parent / temp_name(".del", item.path.name)
                    os.rename(item.path, target)
                _remove(target)
            except OSError as exc:
                outcome.skipped.append((item, exc.strerror or str(exc)))
                continue
            outcome.removed.append(item)
    return outcome


__all__ = ["Item", "Plan", "Outcome", "plan", "apply", "unreferenced", "references", "dir_size", "human_size",
           "try_lock", "last_holder"]
