"""The artifact store: `data/<stage>/<version>/` directories, each complete only once its manifest exists.

A stage run writes into a hidden sibling directory and renames it into place after `manifest.json`
is written, so a crash never leaves anything that looks like an artifact. The version is a content
fingerprint of everything that decides the output, so the same run again is a cache hit.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipe_embed.pipeline import __version__
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.hashing import canonical_json, hash_file, hash_value

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
VERSION_LENGTH = 12
DEFAULT_DATA_DIR = Path("data")


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
                extra: dict[str, Any] | None = None) -> str:
    """The version: a hash of stage, format version, resolved config, input versions and extras."""
    payload = {
        "stage": stage,
        "format_version": format_version,
        "config": config,
        "inputs": sorted(f"{a.stage}@{a.version}" for a in inputs),
        "extra": extra or {},
    }
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """The artifact store rooted at a data directory."""

    def __init__(self, root: str | Path = DEFAULT_DATA_DIR) -> None:
        self.root = Path(root)

    # -- reading -----------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def stages(self) -> list[str]:
        """Stage names that hold at least one artifact."""
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir()
                      if d.is_dir() and not d.name.startswith(".") and self.versions(d.name))

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
        directory = self.stage_dir(stage)
        if not directory.is_dir():
            return []
        found = [a for d in directory.iterdir()
                 if d.is_dir() and not d.name.startswith(".") and (a := self.load(d)) is not None]
        return sorted(found, key=lambda a: (a.manifest.get("finished", ""), a.version), reverse=True)

    def get(self, stage: str, version: str) -> Artifact | None:
        return self.load(self.stage_dir(stage) / version)

    def resolve(self, ref: str | Path, stage: str | None = None) -> Artifact:
        """Resolve `stage@latest`, `stage@<version prefix>`, a bare stage name, or a path."""
        text = str(ref)
        path = Path(text)
        if "@" not in text and (path.is_dir() or os.sep in text or text.startswith(".")):
            artifact = self.load(path)
            if artifact is None:
                raise PipeError(f"{text}: not an artifact (no {MANIFEST} in it)",
                                hint="point at a data/<stage>/<version> directory or use stage@latest")
            if stage and artifact.stage != stage:
                raise PipeError(f"{text}: is a '{artifact.stage}' artifact, expected '{stage}'")
            return artifact
        name, _, selector = text.partition("@")
        selector = selector or "latest"
        if stage and name != stage:
            raise PipeError(f"{text}: expected a '{stage}' artifact")
        candidates = self.versions(name)
        if not candidates:
            have = ", ".join(self.stages()) or "none"
            raise PipeError(f"no '{name}' artifact in {self.root}",
                            hint=f"run `pipe {name}` first (stages with artifacts: {have})")
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
    @contextlib.contextmanager
    def _lock(self, stage: str, version: str) -> Iterator[None]:
        lock_dir = self.stage_dir(stage) / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{version}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _clean_stale(self, stage: str) -> None:
        """Remove temporary directories left by runs whose process is gone."""
        for tmp in self.stage_dir(stage).glob(".tmp-*"):
            try:
                pid = int(tmp.name.split("-")[2])
            except (IndexError, ValueError):
                continue
            if not _pid_alive(pid):
                shutil.rmtree(tmp, ignore_errors=True)

    def run(self, *, stage: str, format_version: int, config: Any, inputs: list[Artifact],
            build: Callable[[Path], StageResult], extra: dict[str, Any] | None = None,
            force: bool = False, resumable: bool = False) -> RunOutcome:
        """Run a stage unless an artifact with the same fingerprint exists (or `force`).

        `build(workdir)` writes the output files into `workdir` and returns a StageResult. With
        `resumable`, the work directory survives a killed run, so the next identical run can pick
        up what the killed one left (training checkpoints, crawl progress).
        """
        version = fingerprint(stage, format_version, config, inputs, extra)
        stage_dir = self.stage_dir(stage)
        stage_dir.mkdir(parents=True, exist_ok=True)
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
                work = stage_dir / f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
                    old = stage_dir / f".old-{version}-{uuid.uuid4().hex[:8]}"
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
