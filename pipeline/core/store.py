"""The artifact store: `data/<stage>/<version>/` directories, each complete only once its manifest exists.

A stage run writes into a hidden sibling directory and renames it into place after `manifest.json`
is written, so a crash never leaves anything that looks like an artifact. The version is a content
fingerprint of everything that decides the output, so the same run again is a cache hit.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import fcntl
import json
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict, cast

from pipe_embed.pipeline import __version__
from pipe_embed.pipeline.core.config import versioned_dict
from pipe_embed.pipeline.core.errors import PipeError, from_os_error
from pipe_embed.pipeline.core.hashing import canonical_json, code_modules, code_version, hash_file, hash_value

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
VERSION_LENGTH = 12
DEFAULT_DATA_DIR = Path("data")
LOCKS = ".locks"
TEMP_KINDS = (".tmp", ".old", ".del")  # a run's work dir, a replaced artifact, an artifact being deleted
PIPELINE_STAGES = ("crawl", "compose", "mine", "train", "eval", "iterate", "report", "sweep")
REF_HINT = "refs are stage@latest, stage@<version prefix>, or an artifact directory inside the data dir"
_STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_SELECTOR = re.compile(r"[A-Za-z0-9]+")


class ManifestExtra(TypedDict, total=False):
    """Top-level manifest keys a stage adds through `StageResult.extra` (the best run of iterate and sweep, crawl settings)."""

    best_model: str
    best_train: str | None
    best_config: str
    crawl_settings: dict[str, Any]  # the crawl's operational settings (politeness, cache), outside its version


class Manifest(ManifestExtra, total=False):
    """`manifest.json` as the store writes it (`Store._build`); one read back may lack keys (hand-made, older)."""

    schema_version: int
    stage: str
    version: str
    format_version: int
    created: str
    finished: str
    package_version: str
    git_commit: str | None
    config: dict[str, Any]
    inputs: list[dict[str, str]]  # {"stage", "version"} of each input artifact
    fingerprint_extra: dict[str, Any]
    code_version: str | None
    files: dict[str, dict[str, Any]]  # relative path -> sha256, bytes, mtime_ns[, rows]
    stats: dict[str, Any]
    metrics: dict[str, Any]
    headline: dict[str, Any]


@dataclass(frozen=True)
class Artifact:
    """A finished artifact: its directory and its parsed manifest."""

    stage: str
    version: str
    path: Path
    manifest: Manifest

    @property
    def ref(self) -> str:
        return f"{self.stage}@{self.version}"

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    @property
    def inputs(self) -> list[dict[str, str]]:
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
    extra: ManifestExtra = field(default_factory=lambda: ManifestExtra())


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


def _git(folder: Path, *args: str) -> str | None:
    """The output of one git command run in `folder`, or None when it fails (no git, not a checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def git_commit(source: Path = Path(__file__)) -> str | None:
    """The HEAD commit of the git checkout that tracks `source` (pipe's own code by default); None outside
    one, so a copy of pipe installed inside another project's tree never records that project's commit."""
    source = source.resolve()
    if _git(source.parent, "ls-files", "--error-unmatch", "--", source.name) is None:
        return None
    return _git(source.parent, "rev-parse", "HEAD")


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
    """sha256, bytes, mtime (the store's fast integrity check) and (for tables) rows of every file
    below root, manifest excluded."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST:
            continue
        info = path.stat()
        entry: dict[str, Any] = {"sha256": hash_file(path), "bytes": info.st_size, "mtime_ns": info.st_mtime_ns}
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


def written_ns(artifact: Artifact) -> int:
    """When the store wrote an artifact's manifest (its mtime, ns): what `@latest` orders by."""
    try:
        return os.stat(artifact.path / MANIFEST).st_mtime_ns
    except OSError:
        return 0


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


def check_directory(path: Path, what: str, hint: str) -> None:
    """Refuse a directory path that is, or lies under, an existing file (`what` names it: "the data dir")."""
    for current in (path, *path.parents):
        if current.exists():
            if not current.is_dir():
                raise PipeError(f"{current}: {what} {'is' if current == path else 'lies under'} "
                                "a file, not a directory", hint=hint)
            break


def _finite(value: Any) -> Any:
    """A JSON value with every NaN/Infinity replaced by null: an undefined number, never invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def finite_json(value: Any, *, ensure_ascii: bool = True) -> str:
    """Indented strict JSON text and a newline: a NaN/Infinity (which JSON cannot hold) is written as null."""
    return json.dumps(_finite(value), indent=2, ensure_ascii=ensure_ascii, allow_nan=False) + "\n"


def manifest_json(manifest: Manifest) -> str:
    """The manifest as strict JSON (no bare NaN/Infinity: a non-finite number is written as null)."""
    return finite_json(manifest, ensure_ascii=False)


class Store:
    """The artifact store rooted at a data directory."""

    def __init__(self, root: str | Path = DEFAULT_DATA_DIR) -> None:
        if isinstance(root, str) and not root.strip():
            raise PipeError("the data dir is empty ('')",
                            hint="pass --data-dir DIR (use --data-dir . for the current directory)")
        self.root = Path(root)
        check_directory(self.root, "the data dir", "pass --data-dir DIR (a directory; it is created when missing)")

    # -- reading -----------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def stages(self) -> list[str]:
        """Stage names that hold at least one artifact."""
        return [name for name in self.stage_names() if self.versions(name)]

    def stage_names(self) -> list[str]:
        """Every stage directory of the store (with artifacts or not), links out of the data dir excepted."""
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir()
                      if d.is_dir() and valid_stage_name(d.name) and self.inside(d))

    def inside(self, path: Path) -> bool:
        """Whether a path, every symlink resolved, lies inside the data dir: refs never follow a link out."""
        try:
            path.resolve().relative_to(self.root.resolve())
        except (ValueError, OSError, RuntimeError):
            return False
        return True

    def examine(self, path: Path) -> Artifact | str | None:
        """The artifact at a directory; why it is corrupt (a manifest that cannot be read or parsed, or
        names another artifact); None when it holds no manifest or lies outside the data dir."""
        if not self.inside(path):
            return None
        manifest_path = path / MANIFEST
        if not (manifest_path.exists() or manifest_path.is_symlink()):
            return None
        if not self.inside(manifest_path):
            return f"its {MANIFEST} is a link out of the data dir"
        try:
            parsed = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            return f"{MANIFEST} is not valid JSON (line {exc.lineno}: {exc.msg})"
        except UnicodeDecodeError:
            return f"{MANIFEST} is not UTF-8 text"
        except OSError as exc:
            return f"cannot read {MANIFEST} ({exc.strerror})"
        if not isinstance(parsed, dict):
            return f"{MANIFEST} is not a JSON object"
        manifest = cast(Manifest, parsed)  # a JSON object from disk, typed as the store writes it; read with .get
        stage, version = manifest.get("stage", path.parent.name), manifest.get("version", path.name)
        if (stage, version) != (path.parent.name, path.name):
            return f"{MANIFEST} names {stage}@{version}, not the directory's {path.parent.name}@{path.name}"
        return Artifact(stage=stage, version=version, path=path, manifest=manifest)

    def load(self, path: Path) -> Artifact | None:
        """The artifact at a directory, or None when it has no readable manifest or lies outside the store."""
        found = self.examine(path)
        return found if isinstance(found, Artifact) else None

    def _version_dirs(self, stage: str) -> list[Path]:
        if not valid_stage_name(stage):
            raise PipeError(f"'{stage}' is not a stage name", hint="stage names are plain words such as compose")
        directory = self.stage_dir(stage)
        if not directory.is_dir():
            return []
        return [d for d in directory.iterdir() if not d.name.startswith(".") and d.is_dir()]

    def versions(self, stage: str) -> list[Artifact]:
        """All finished artifacts of a stage, newest first by the store's own record: the time its
        manifest was written (file system), not the `finished` time the manifest claims."""
        found = [a for d in self._version_dirs(stage) if (a := self.load(d)) is not None]
        return sorted(found, key=lambda a: (written_ns(a), a.manifest.get("finished", ""), a.version), reverse=True)

    def corrupt(self, stage: str) -> list[tuple[Path, str]]:
        """Directories of a stage that look like artifacts but whose manifest is damaged, and why."""
        found = [(d, problem) for d in self._version_dirs(stage) if isinstance(problem := self.examine(d), str)]
        return sorted(found)

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
        if not looks_like_path and not path.exists():
            raise PipeError(f"{text}: not a stage name, and no such file or directory", hint=REF_HINT)
        return self._by_path(text, path, stage)

    def _by_path(self, text: str, path: Path, stage: str | None) -> Artifact:
        if not path.exists():
            raise PipeError(f"{text}: no such file or directory", hint=REF_HINT)
        root = self.root.resolve()
        real = path.resolve()
        try:
            rel = real.relative_to(root)
        except ValueError:
            kind = "a directory" if real.is_dir() else "a file"
            raise PipeError(f"{text}: {kind} outside the data dir {self.root}, not one of its artifacts",
                            hint="refs never leave the store: pass --data-dir for the store that holds it, "
                                 "or use stage@version") from None
        if len(rel.parts) != 2 or not all(valid_stage_name(p) for p in rel.parts):
            raise PipeError(f"{text}: not an artifact directory of {self.root}",
                            hint=f"point at {self.root}/<stage>/<version> or use stage@latest")
        found = self.examine(self.root / rel)
        if isinstance(found, str):
            raise PipeError(f"{text}: a corrupt artifact: {found}",
                            hint=f"rerun the stage that made it with --force, or remove {self.root / rel}")
        if found is None:
            raise PipeError(f"{text}: not an artifact (no {MANIFEST} in it)",
                            hint="point at a data/<stage>/<version> directory or use stage@latest")
        artifact = found
        if stage and artifact.stage != stage:
            raise PipeError(f"{text}: is a '{artifact.stage}' artifact, expected '{stage}'")
        return artifact

    def _by_name(self, text: str, name: str, selector: str, stage: str | None) -> Artifact:
        if stage and name != stage:
            raise PipeError(f"{text}: expected a '{stage}' artifact")
        candidates = self.versions(name)
        if not candidates:
            broken = self.corrupt(name)
            if broken:
                path, why = broken[0]
                raise PipeError(f"no readable '{name}' artifact in {self.root}: {path} is corrupt ({why})",
                                hint=f"rerun `pipe {name} --force`, or move the damaged directory away")
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

    # -- integrity ---------------------------------------------------------------------------
    def verify(self, artifact: Artifact) -> None:
        """Refuse an artifact whose files differ from the sha256s its manifest lists; a file whose
        size and mtime are those the store recorded is trusted without hashing."""
        files = artifact.manifest.get("files")
        if not isinstance(files, dict):
            raise PipeError(f"{artifact.ref}: its {MANIFEST} lists no files, so they cannot be checked",
                            hint=f"rerun `pipe {artifact.stage} --force` to rebuild it")
        for name, entry in sorted(files.items()):
            problem = self._file_problem(artifact.path, name, entry)
            if problem:
                raise PipeError(f"{artifact.ref}: {name} {problem}: the artifact was changed after it was "
                                "written, so it is not used",
                                hint=f"rerun `pipe {artifact.stage} --force` to rebuild it, or restore the file")

    def _file_problem(self, root: Path, name: str, entry: Any) -> str | None:
        """What is wrong with one listed file of an artifact, or None when it is as written."""
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            return "has no sha256 in the manifest"
        path = root / name
        try:
            path.resolve().relative_to(root.resolve())
        except (ValueError, OSError, RuntimeError):
            return "lies outside the artifact (a link or '..' in its name)"
        try:
            info = path.stat()
        except FileNotFoundError:
            return "is missing"
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file"
        size = entry.get("bytes")
        if isinstance(size, int) and info.st_size != size:
            return f"has {info.st_size} bytes where the manifest lists {size}"
        if entry.get("mtime_ns") == info.st_mtime_ns and isinstance(size, int):
            return None
        try:
            digest = hash_file(path)
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        return None if digest == entry["sha256"] else "does not match the sha256 its manifest lists"

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
        existing = None if force else self.get(stage, version)
        if existing is not None:  # a cache hit reads only: a read-only store serves it
            return RunOutcome(existing, cached=True)
        for artifact in inputs:
            self.verify(artifact)
        try:
            return self._build(stage, version, format_version, config, inputs, build, extra, code,
                               force, resumable)
        except OSError as exc:
            raise self._write_error(exc, stage) from None

    def _write_error(self, exc: OSError, stage: str) -> Exception:
        """A failed write as one line: a read-only store names the data dir; other user-caused errors
        name the path; anything else stays the OSError it is."""
        ours = isinstance(exc.filename, (str, Path)) and self.inside(Path(exc.filename))
        if ours and exc.errno == errno.EROFS:
            return PipeError(f"{self.root}: the data dir is read-only, so the {stage} artifact cannot be written",
                             hint="an artifact that exists is still served from it; to build a new one, "
                                  "pass --data-dir DIR on a writable disk")
        problem = from_os_error(exc, f"cannot write the {stage} artifact" if ours else "")
        return problem if problem is not None else exc

    def _build(self, stage: str, version: str, format_version: int, config: Any, inputs: list[Artifact],
               build: Callable[[Path], StageResult], extra: dict[str, Any] | None, code: str | None,
               force: bool, resumable: bool) -> RunOutcome:
        """Build one artifact under its version's lock: work dir, files, manifest last, rename into place."""
        stage_dir = self.stage_dir(stage)
        check_directory(stage_dir, f"the {stage} stage dir", f"move {stage_dir} away or pass another --data-dir")
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
                work = stage_dir / temp_name(".tmp", version)
            work.mkdir(parents=True, exist_ok=True)
            created = now_iso()
            try:
                result = build(work)
                manifest: Manifest = {
                    "schema_version": SCHEMA_VERSION,
                    "stage": stage,
                    "version": version,
                    "format_version": format_version,
                    "created": created,
                    "finished": now_iso(),
                    "package_version": __version__,
                    "git_commit": git_commit(),
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
                tmp_manifest.write_text(manifest_json(manifest), encoding="utf-8")
                os.replace(tmp_manifest, work / MANIFEST)
                final = stage_dir / version
                if final.exists():  # with force, or a corrupt copy: swap the old one out, then drop it
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
