"""The artifact store: `data/<stage>/<version>/` directories, each complete only once its manifest exists.

A stage run writes into a hidden sibling directory and renames it into place after `manifest.json`
is written, so a crash never leaves anything that looks like an artifact. The version is a content
fingerprint of everything that decides the output, so the same run again is a cache hit.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipe_embed.pipeline import __version__
from pipe_embed.pipeline.core.config import versioned_dict
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.hashing import canonical_json, code_modules, code_version, hash_file, hash_value

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
VERSION_LENGTH = 12
DEFAULT_DATA_DIR = Path("data")
LOCKS = ".locks"
TEMP_KINDS = (".tmp", ".old", ".del")  # a run's work dir, a replaced artifact, an artifact being deleted
PIPELINE_STAGES = ("crawl", "compose", "mine", "train", "eval", "iterate", "report")
REF_HINT = "refs are stage@latest, stage@<version prefix>, or an artifact directory inside the data dir"
_STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_SELECTOR = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class Artifact:
    """A finished artifact: its directory and its parsed manifest."""

    stage: str
    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.stage}@{self.version}"

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.manifest.get("inputs", [])

    @property
    def stats(self) -> dict[str, Any]:
        return self.manifest.get("stats", {})

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})

    def file(self, name: str) -> Path:
        """Path of one of the artifact's files (it need not exist)."""
        return self.path / name


@dataclass
class StageResult:
    """What a stage's build function reports besides its files."""

    stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    """The artifact a stage run produced or found, and whether it was a cache hit."""

    artifact: Artifact
    cached: bool


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def fingerprint(stage: str, format_version: int, config: Any, inputs: list[Artifact],
                extra: dict[str, Any] | None = None, code: str | None = None) -> str:
    """The version: a hash of stage, format version, versioned config, input versions, extras and code."""
    payload = {
        "stage": stage,
        "format_version": format_version,
        "config": versioned_dict(config) if dataclasses.is_dataclass(config) else config,
        "inputs": sorted(f"{a.stage}@{a.version}" for a in inputs),
        "extra": extra or {},
    }
    if code is not None:
        payload["code"] = code
    return hash_value(payload, VERSION_LENGTH)


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _count_rows(path: Path) -> int | None:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            return max(sum(1 for _ in reader) - 1, 0)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def describe_files(root: Path) -> dict[str, dict[str, Any]]:
    """sha256, bytes and (for tables) rows of every file below root, manifest excluded."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST:
            continue
        entry: dict[str, Any] = {"sha256": hash_file(path), "bytes": path.stat().st_size}
        rows = _count_rows(path)
        if rows is not None:
            entry["rows"] = rows
        files[rel] = entry
    return files


def _code_of(build: Callable[..., Any]) -> str | None:
    """The code version of the package that defines a stage's build function (None if unknowable)."""
    module = getattr(build, "__module__", None)
    if not module or module == "__main__":
        return None
    try:
        return code_version(code_modules(module))
    except (ImportError, ValueError, OSError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a reused pid reads as alive: the safe side)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def valid_stage_name(name: str) -> bool:
    """A stage name is one plain path component: letters, digits, `_` and `-`, never `.` or `/`."""
    return bool(_STAGE_NAME.fullmatch(name))


def _host_tag(name: str) -> str:
    """A host name as it may appear in a temp dir name: no `-` (the field separator), at most 40 chars."""
    return re.sub(r"[^A-Za-z0-9.]", "_", name)[:40] or "host"


HOST = _host_tag(socket.gethostname())


@dataclass(frozen=True)
class TempName:
    """What a hidden `.tmp-`/`.old-`/`.del-` directory name says about the run that made it."""

    kind: str  # ".tmp", ".old" or ".del"
    version: str
    host: str | None  # None: a name from before hosts were recorded
    pid: int


def temp_name(kind: str, version: str) -> str:
    """`.tmp-<version>-<host>-<pid>-<rand>`: host and pid say whose it is, so only its host may clean it."""
    return f"{kind}-{version}-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def parse_temp_name(name: str) -> TempName | None:
    """The parts of a temp dir name (also the older `<kind>-<version>-<pid>-<rand>`), or None."""
    parts = name.split("-")
    if parts[0] not in TEMP_KINDS or len(parts) not in (4, 5):
        return None
    host = parts[2] if len(parts) == 5 else None
    try:
        pid = int(parts[-2])
    except ValueError:
        return None
    return TempName(parts[0], parts[1], host, pid)


def stale_on_this_host(entry: TempName) -> bool:
    """Whether a temp dir was left by a process of this host that is gone (never another host's)."""
    return entry.host == HOST and not pid_alive(entry.pid)


class Store:
    """The artifact store rooted at a data directory."""

    def __init__(self, root: str | Path = DEFAULT_DATA_DIR) -> None:
        self.root = Path(root)
        for path in (self.root, *self.root.parents):
            if path.exists():
                if not path.is_dir():
                    raise PipeError(f"{path}: the data dir {'is' if path == self.root else 'lies under'} "
                                    "a file, not a directory",
                                    hint="pass --data-dir DIR (a directory; it is created when missing)")
                break

    # -- reading -----------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def stages(self) -> list[str]:
        """Stage names that hold at least one artifact."""
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir()
                      if d.is_dir() and valid_stage_name(d.name) and self.versions(d.name))

    def load(self, path: Path) -> Artifact | None:
        """The artifact at a directory, or None when it has no (readable) manifest."""
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return Artifact(stage=manifest.get("stage", path.parent.name),
                        version=manifest.get("version", path.name), path=path, manifest=manifest)

    def versions(self, stage: str) -> list[Artifact]:
        """All finished artifacts of a stage, newest first."""
        if not valid_stage_name(stage):
            raise PipeError(f"'{stage}' is not a stage name", hint="stage names are plain words such as compose")
        directory = self.stage_dir(stage)
        if not directory.is_dir():
            return []
        found = [a for d in directory.iterdir()
                 if d.is_dir() and not d.name.startswith(".") and (a := self.load(d)) is not None]
        return sorted(found, key=lambda a: (a.manifest.get("finished", ""), a.version), reverse=True)

    def get(self, stage: str, version: str) -> Artifact | None:
        """The artifact stage@version (exact version), or None; never looks outside the store."""
        if not (isinstance(stage, str) and isinstance(version, str) and valid_stage_name(stage)
                and valid_stage_name(version)):
            return None
        return self.load(self.stage_dir(stage) / version)

    def resolve(self, ref: str | Path, stage: str | None = None) -> Artifact:
        """Resolve `stage@latest`, `stage@<version prefix>`, a bare stage name, or a path.

        A ref never leaves the store: the stage part is one plain name, and a path must be an
        artifact directory `<data dir>/<stage>/<version>` (symlinks resolved) of this store.
        """
        text = str(ref).strip()
        if not text:
            raise PipeError("empty artifact reference", hint=REF_HINT)
        if "@" in text:
            name, _, selector = text.partition("@")
            if not name:
                raise PipeError(f"{text}: give a stage before '@'", hint=f"e.g. compose{text}")
            if not valid_stage_name(name):
                raise PipeError(f"{text}: '{name}' is not a stage name", hint=REF_HINT)
            if not selector:
                raise PipeError(f"{text}: give a version after '@'",
                                hint=f"{name}@latest or {name}@<version prefix> (`pipe ls {name}` lists them)")
            if not _SELECTOR.fullmatch(selector):
                raise PipeError(f"{text}: '{selector}' is not a version",
                                hint=f"{name}@latest or {name}@<version prefix> (`pipe ls {name}` lists them)")
            return self._by_name(text, name, selector, stage)
        path = Path(text).expanduser()
        looks_like_path = "/" in text or os.sep in text or text.startswith((".", "~")) or path.is_absolute()
        if not looks_like_path and valid_stage_name(text) and (self.versions(text) or not path.is_dir()):
            return self._by_name(text, text, "latest", stage)
        if not looks_like_path and not path.is_dir():
            raise PipeError(f"{text}: not a stage name or an artifact directory", hint=REF_HINT)
        return self._by_path(text, path, stage)

    def _by_path(self, text: str, path: Path, stage: str | None) -> Artifact:
        root = self.root.resolve()
        real = path.resolve()
        try:
            rel = real.relative_to(root)
        except ValueError:
            raise PipeError(f"{text}: outside the data dir {self.root}",
                            hint="refs never leave the store: pass --data-dir for the store that holds it, "
                                 "or use stage@version") from None
        if len(rel.parts) != 2 or not all(valid_stage_name(p) for p in rel.parts):
            raise PipeError(f"{text}: not an artifact directory of {self.root}",
                            hint=f"point at {self.root}/<stage>/<version> or use stage@latest")
        artifact = self.load(self.root / rel)
        if artifact is None:
            raise PipeError(f"{text}: not an artifact (no {MANIFEST} in it)",
                            hint="point at a data/<stage>/<version> directory or use stage@latest")
        if stage and artifact.stage != stage:
            raise PipeError(f"{text}: is a '{artifact.stage}' artifact, expected '{stage}'")
        return artifact

    def _by_name(self, text: str, name: str, selector: str, stage: str | None) -> Artifact:
        if stage and name != stage:
            raise PipeError(f"{text}: expected a '{stage}' artifact")
        candidates = self.versions(name)
        if not candidates:
            have = ", ".join(self.stages()) or "none"
            if name in PIPELINE_STAGES:
                hint = f"run `pipe {name}` first (stages with artifacts: {have})"
            else:
                hint = f"'{name}' is no stage here (stages with artifacts: {have})"
            raise PipeError(f"no '{name}' artifact in {self.root}", hint=hint)
        if selector == "latest":
            return candidates[0]
        matches = [a for a in candidates if a.version.startswith(selector)]
        if not matches:
            raise PipeError(f"{text}: no '{name}' version starts with '{selector}'",
                            hint="`pipe ls " + name + "` lists the versions")
        if len(matches) > 1:
            listed = ", ".join(a.version for a in matches[:5])
            raise PipeError(f"{text}: '{selector}' matches several versions ({listed})",
                            hint="give more characters of the version")
        return matches[0]

    def upstream(self, artifact: Artifact, stage: str) -> Artifact | None:
        """The nearest ancestor of `artifact` from `stage`, following manifest inputs breadth-first."""
        queue = [artifact]
        seen: set[str] = set()
        while queue:
            current = queue.pop(0)
            if current.stage == stage:
                return current
            for item in current.inputs:
                key = f"{item.get('stage')}@{item.get('version')}"
                if key in seen:
                    continue
                seen.add(key)
                parent = self.get(item["stage"], item["version"]) if "stage" in item else None
                if parent is not None:
                    queue.append(parent)
        return None

    # -- writing -----------------------------------------------------------------------------
    def lock_path(self, stage: str, version: str) -> Path:
        """The per-version lock file; it also names the host and pid of the last run that held it."""
        return self.stage_dir(stage) / LOCKS / f"{version}.lock"

    @contextlib.contextmanager
    def _lock(self, stage: str, version: str) -> Iterator[None]:
        path = self.lock_path(stage, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(f"{HOST} {os.getpid()}\n")
                fh.flush()
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _clean_stale(self, stage: str) -> None:
        """Remove work dirs left by dead runs of this host; other hosts' dirs are never touched."""
        for tmp in self.stage_dir(stage).glob(".tmp-*"):
            entry = parse_temp_name(tmp.name)
            if entry is not None and stale_on_this_host(entry):
                shutil.rmtree(tmp, ignore_errors=True)

    def run(self, *, stage: str, format_version: int, config: Any, inputs: list[Artifact],
            build: Callable[[Path], StageResult], extra: dict[str, Any] | None = None,
            force: bool = False, resumable: bool = False) -> RunOutcome:
        """Run a stage unless an artifact with the same fingerprint exists (or `force`).

        `config` is the stage's config dataclass (its `versioned=False` fields stay out of the
        version; the manifest keeps them all) or an already filtered dict. The version also holds a
        hash of the code of the package that defines `build`, so a logic change re-runs the stage.
        `build(workdir)` writes the output files into `workdir` and returns a StageResult. With
        `resumable`, the work directory survives a killed run, so the next identical run can pick
        up what the killed one left (training checkpoints, crawl progress).
        """
        code = _code_of(build)
        version = fingerprint(stage, format_version, config, inputs, extra, code)
        if not valid_stage_name(stage):
            raise ValueError(f"invalid stage name {stage!r}")
        stage_dir = self.stage_dir(stage)
        try:
            stage_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PipeError(f"{stage_dir}: cannot create the stage directory ({exc.strerror})",
                            hint="check --data-dir and its permissions") from None
        with self._lock(stage, version):
            existing = self.get(stage, version)
            if existing is not None and not force:
                return RunOutcome(existing, cached=True)
            self._clean_stale(stage)
            if resumable:
                work = stage_dir / f".work-{version}"
                if force and work.exists():
                    shutil.rmtree(work)
            else:
                work = stage_dir / temp_name(".tmp", version)
            work.mkdir(parents=True, exist_ok=True)
            created = now_iso()
            try:
                result = build(work)
                manifest = {
                    "schema_version": SCHEMA_VERSION,
                    "stage": stage,
                    "version": version,
                    "format_version": format_version,
                    "created": created,
                    "finished": now_iso(),
                    "package_version": __version__,
                    "git_commit": _git_commit(),
                    "config": json.loads(canonical_json(config)),
                    "inputs": [{"stage": a.stage, "version": a.version} for a in inputs],
                    "fingerprint_extra": json.loads(canonical_json(extra or {})),
                    "code_version": code,
                    "files": describe_files(work),
                    "stats": result.stats,
                    "metrics": result.metrics,
                    "headline": result.headline,
                    **result.extra,
                }
                tmp_manifest = work / f"{MANIFEST}.partial"
                tmp_manifest.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
                os.replace(tmp_manifest, work / MANIFEST)
                final = stage_dir / version
                if final.exists():  # only with force: swap the old copy out, then drop it
                    old = stage_dir / temp_name(".old", version)
                    os.rename(final, old)
                    os.rename(work, final)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.rename(work, final)
            except BaseException:
                if not resumable:
                    shutil.rmtree(work, ignore_errors=True)
                raise
        artifact = self.get(stage, version)
        assert artifact is not None
        return RunOutcome(artifact, cached=False)
