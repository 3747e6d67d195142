"""Fast CPU encoding with the same vectors: the transformer of a SentenceTransformer run by OpenVINO or ONNX Runtime.

Only the transformer's forward pass changes hands: sentence-transformers still tokenizes (dynamic
padding, its length-sorted batches, the model's max length), pools and normalises. The pass is
exported once per model weights into `<export_root>/<weights hash>/<backend>/`. `auto` tries, in order,
OpenVINO in the CPU's native precision (bfloat16 where the CPU has it; vectors move by < 1e-4
cosine), OpenVINO in float32, ONNX Runtime in float32, and keeps the first whose vectors agree with
torch's (min cosine >= 0.9999 on a sample), else torch, with a one-line note why. The name in use says
the precision (`openvino-bf16`, `openvino-f32`, `onnx-f32`, `torch`): float32 ones give torch's vectors,
so only they may share cached vectors (`is_float32`). Used by mining and evaluation alike.

Not sentence-transformers' own `backend=`: it needs optimum-intel / optimum-onnx, which pin
transformers (<5.6 / <4.58) and pull torchvision, and so break this project's environment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.console import debug
from pipe_embed.pipeline.core.errors import ConfigError, MissingDependency, PipeError

BACKENDS = ("auto", "torch", "openvino", "onnx")
FAST_BACKENDS = ("openvino", "onnx")  # the order `auto` tries them in (fastest first)
BACKEND_MODULES = {"openvino": ("openvino",), "onnx": ("onnxruntime", "onnx")}
# auto: a backend's native precision first (OpenVINO: bf16 on AMX CPUs, else f32), then float32; f32: float32 only
PRECISIONS = ("auto", "f32")
NATIVE_PRECISION = ("openvino",)  # backends whose CPU default precision may not be float32
COSINE_MIN = 0.9999
CHECK_SIZE = 32
# `auto` exports a model (seconds, once per weights) only for at least this many texts to encode;
# an export already cached is always used. Below it, torch finishes before an export would.
AUTO_EXPORT_MIN_TEXTS = 256
EXPORT_FORMAT = 1
EXPORT_META = "export.json"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the order of the exported graph's inputs

# The default check sample: short terms and long definitions, so batches hold padding.
CHECK_TEXTS = [
    "rook", "en passant", "zugzwang", "gradient descent", "overfitting", "learning rate", "epoch", "batch norm",
    "castling kingside", "fianchetto", "dropout", "attention head", "tokenizer", "cosine similarity",
    "hard negative", "checkmate",
    "a chess piece that moves any number of squares along a rank or a file",
    "a special pawn capture available immediately after an opponent's pawn advances two squares",
    "a situation in which any move a player makes worsens their position",
    "an optimisation method that repeatedly steps against the gradient of the loss",
    "when a model learns the noise of its training data and generalises worse to new data",
    "the step size by which the weights move at each update of the optimiser",
    "one full pass of the training algorithm over every example in the training set",
    "a technique that normalises the activations of each layer over the examples of a batch",
    "developing a bishop to the long diagonal by moving the adjacent knight's pawn one square",
    "randomly setting a share of the activations to zero during training so the network cannot rely on any one",
    "the part of a transformer layer that computes a weighted mix of the other tokens' values",
    "a program that splits text into the units of a vocabulary, such as words or word pieces",
    "the cosine of the angle between two vectors: their dot product divided by the product of their lengths",
    "a candidate that a retriever ranks highly for a query although it is not a correct answer for it",
    "an attack on the king from which there is no legal escape, ending the game at once in a win",
    ("In the opening, both players usually try to control the centre, develop their minor pieces quickly, "
     "castle early to keep the king safe, and avoid moving the same piece twice without a good reason."),
]


def backend_installed(backend: str) -> bool:
    """Whether the packages a fast backend needs can be imported here."""
    return all(importlib.util.find_spec(module) is not None for module in BACKEND_MODULES[backend])


def backend_label(backend: str, precision: str) -> str:
    """The name of a fast backend running in a precision: `openvino-bf16`, `openvino-f32`, `onnx-f32`."""
    return f"{backend}-{precision}"


def is_float32(name: str) -> bool:
    """Whether a backend in use (`torch`, `onnx-f32`, `openvino-bf16`, ...) computes in float32, i.e. torch's vectors."""
    return name == "torch" or name.endswith("-f32")


def require_backend(backend: str, precision: str = "auto") -> None:
    """Fail with the exact pip line when an explicitly asked backend is not installed."""
    if precision not in PRECISIONS:
        raise ConfigError(f"field 'precision': unknown precision {precision!r}", hint=f"choose {', '.join(PRECISIONS)}")
    if backend not in BACKENDS:
        raise ConfigError(f"field 'backend': unknown backend {backend!r}", hint=f"choose {', '.join(BACKENDS)}")
    for module in BACKEND_MODULES.get(backend, ()):
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(module, extra=backend)


# -- the transformer module inside a SentenceTransformer ---------------------------------------------------

def _transformer_slot(st: Any) -> tuple[Any, str]:
    """(first module, attribute holding the Hugging Face model): `model` in sentence-transformers 6, else `auto_model`."""
    first = st[0]
    attr = "model" if isinstance(getattr(type(first), "auto_model", None), property) else "auto_model"
    return first, attr


def _why_unsupported(st: Any) -> str | None:
    """Why this model cannot run on a fast backend (None when it can)."""
    device = getattr(st, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        return f"the model runs on {device}, fast backends are for CPU"
    first, attr = _transformer_slot(st)
    hf = getattr(first, attr, None)
    tokenizer = getattr(first, "tokenizer", None)
    if hf is None or tokenizer is None or not hasattr(hf, "config"):
        return f"its first module ({type(first).__name__}) is not a text transformer"
    if getattr(hf, "peft_config", None):
        return "it has unmerged LoRA adapters"
    names = _input_names(hf, tokenizer)
    if "input_ids" not in names or "attention_mask" not in names:
        return "its tokenizer gives no input_ids/attention_mask"
    return None


def _input_names(hf: Any, tokenizer: Any) -> list[str]:
    """The inputs the exported graph takes: what the tokenizer gives and the model accepts, in _INPUTS order."""
    given = set(tokenizer(["a"], return_tensors="pt").keys())
    accepted = set(inspect.signature(hf.forward).parameters)
    return [name for name in _INPUTS if name in given and name in accepted]


def _example(tokenizer: Any, names: list[str]) -> tuple[Any, ...]:
    """Tracing inputs with padding in them, so the traced graph keeps the attention mask path."""
    enc = tokenizer(["a short one", "a rather longer example sentence, padded against the first"],
                    padding=True, return_tensors="pt")
    return tuple(enc[name] for name in names)


def _forward_module(hf: Any, names: list[str]) -> Any:
    """A torch module mapping (input_ids, attention_mask[, token_type_ids]) to last_hidden_state: the graph to export."""
    import torch

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = hf

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(**{name: given[name] for name in names}, return_dict=True).last_hidden_state

    return Forward().eval()


def compiled_transformer(run: Callable[[dict[str, Any]], Any], names: list[str], config: Any) -> Any:
    """A torch module standing in for the Hugging Face model inside sentence-transformers' Transformer."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    class CompiledTransformer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = config
            self.input_names = list(names)
            # a parameter, so sentence-transformers still finds the model's device and dtype
            self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

        def forward(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                    **_: Any) -> Any:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            if given["token_type_ids"] is None and "token_type_ids" in self.input_names:
                given["token_type_ids"] = torch.zeros_like(input_ids)
            feed = {name: given[name].detach().cpu().numpy() for name in self.input_names}
            return BaseModelOutput(last_hidden_state=torch.from_numpy(run(feed)))

    return CompiledTransformer()


# -- export, reload ----------------------------------------------------------------------------------

def _versions(backend: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "sentence-transformers", *BACKEND_MODULES[backend]):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _export_openvino(hf: Any, names: list[str], example: tuple[Any, ...], target: Path) -> None:
    import openvino as ov
    import torch

    with torch.no_grad():
        model = ov.convert_model(_forward_module(hf, names), example_input=example,
                                 input=[(name, [-1, -1], ov.Type.i64) for name in names])
    ov.save_model(model, str(target / "model.xml"), compress_to_fp16=False)  # float32 weights: same vectors


def _export_onnx(hf: Any, names: list[str], example: tuple[Any, ...], target: Path) -> None:
    import torch

    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: no onnxscript needed
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(_forward_module(hf, names), example, str(target / "model.onnx"), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, **kwargs)


Runner = Callable[[dict[str, Any]], Any]


def _runner_openvino(folder: Path, precision: str) -> tuple[Runner, str]:
    """Compile for the CPU in float32 or its native precision; (run, the precision it computes in)."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    settings = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_PRECISION_HINT": "f32"} if precision == "f32" else {})}
    compiled = core.compile_model(core.read_model(str(folder / "model.xml")), "CPU", settings)
    actual = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # bf16 on AMX CPUs, else f32
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(feed: dict[str, Any]) -> Any:
        return np.array(request.infer(feed)[output], dtype=np.float32, copy=True)

    return run, actual


def _runner_onnx(folder: Path, precision: str) -> tuple[Runner, str]:
    """ONNX Runtime's CPU provider computes in float32 whatever is asked."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])

    def run(feed: dict[str, Any]) -> Any:
        return np.asarray(session.run(["last_hidden_state"], feed)[0], dtype=np.float32)

    return run, "f32"


EXPORTERS = {"openvino": _export_openvino, "onnx": _export_onnx}
RUNNERS = {"openvino": _runner_openvino, "onnx": _runner_onnx}


def store_export_root(store_root: str | Path) -> Path:
    """A store's export cache: `<data>/.cache/backends`, beside its embedding cache."""
    return Path(store_root) / ".cache" / "backends"


def export_dir(export_root: str | Path, fingerprint: str, backend: str) -> Path:
    """Where a model's export for a backend lives: keyed by the weights' hash, like the embedding cache."""
    return Path(export_root) / fingerprint / backend


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / EXPORT_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if meta.get("format") == EXPORT_FORMAT else None


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Tracing warns about every shape-dependent branch; the check after the export is what counts."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)


def export_model(st: Any, backend: str, export_root: str | Path, fingerprint: str) -> tuple[Path, list[str], bool]:
    """The folder holding the model's export for backend, exporting it unless cached; (folder, inputs, exported)."""
    first, attr = _transformer_slot(st)
    hf, tokenizer = getattr(first, attr), first.tokenizer
    folder = export_dir(export_root, fingerprint, backend)
    meta = _read_meta(folder)
    if meta is not None:
        return folder, list(meta["inputs"]), False
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)  # unfinished or of an older format
    names = _input_names(hf, tokenizer)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = folder.parent / f".{backend}.{uuid.uuid4().hex[:8]}.partial"
    work.mkdir()
    try:
        with _quiet_export():
            EXPORTERS[backend](hf, names, _example(tokenizer, names), work)
        meta = {"format": EXPORT_FORMAT, "backend": backend, "fingerprint": fingerprint, "inputs": names,
                "versions": _versions(backend)}
        (work / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")  # written last
        try:
            os.replace(work, folder)
        except OSError:  # another process finished the same export first: use theirs
            if _read_meta(folder) is None:
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return folder, names, True


@contextlib.contextmanager
def _export_root(export_root: str | Path | None) -> Iterator[Path]:
    """The given export cache, or a temporary one removed once the model is loaded (runners keep no file open)."""
    if export_root is not None:
        yield Path(export_root)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pipe-export-") as tmp:
        yield Path(tmp)


def attach(st: Any, backend: str, export_root: str | Path, fingerprint: str, precision: str = "f32") -> tuple[Any, str]:
    """Put the exported transformer into st (in place), compiled in precision (f32 or native).

    Returns (the Hugging Face model it replaced, the precision it computes in).
    """
    folder, names, exported = export_model(st, backend, export_root, fingerprint)
    try:
        run, actual = RUNNERS[backend](folder, precision)
    except Exception:  # re-raised unless a cached export is to blame
        if exported:
            raise
        shutil.rmtree(folder, ignore_errors=True)  # a damaged cached export: once more from the weights
        folder, names, exported = export_model(st, backend, export_root, fingerprint)
        run, actual = RUNNERS[backend](folder, precision)
    first, attr = _transformer_slot(st)
    original = getattr(first, attr)
    setattr(first, attr, compiled_transformer(run, names, original.config))
    debug(f"encoder: {backend} export {'written to' if exported else 'reused from'} {folder}, computing in {actual}")
    return original, actual


def detach(st: Any, original: Any) -> None:
    """Put the Hugging Face model back (after a failed check)."""
    first, attr = _transformer_slot(st)
    setattr(first, attr, original)


# -- the check and the choice -----------------------------------------------------------------------

def _vectors(st: Any, texts: Sequence[str]) -> Any:
    import numpy as np

    out = st.encode(list(texts), batch_size=8, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


def min_cosine(a: Any, b: Any) -> float:
    """Smallest cosine between matching rows of two arrays of normalised vectors."""
    import numpy as np

    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("-inf")
    return float(np.min(np.einsum("ij,ij->i", a, b)))


def check_sample(texts: Sequence[str] | None) -> list[str]:
    """CHECK_SIZE distinct non-empty texts for the check: the given ones (both ends), topped up from CHECK_TEXTS."""
    given = [t for t in dict.fromkeys(texts or []) if t.strip()]
    if len(given) > CHECK_SIZE:
        half = CHECK_SIZE // 2
        return given[:half] + given[-half:]
    if not given:
        return list(CHECK_TEXTS)
    return list(dict.fromkeys([*given, *CHECK_TEXTS]))[:max(CHECK_SIZE, len(given))]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _precisions(backend: str, precision: str) -> list[str]:
    """The precisions to try for a backend, in order: native first where it may differ from float32."""
    return ["native", "f32"] if precision == "auto" and backend in NATIVE_PRECISION else ["f32"]


def load_encoder(model: str | Path | None, backend: str = "auto", device: str | None = None, *,
                 export_root: str | Path | None = None, sample: Sequence[str] | None = None,
                 max_length: int | None = None, trust_remote_code: bool = False,
                 texts_to_encode: int | None = None, precision: str = "auto") -> tuple[Any, str, str]:
    """A SentenceTransformer encoding as fast as this machine allows: (model, name in use, one-line note).

    backend: `torch`; `openvino` or `onnx` (must be installed and pass the check, else PipeError);
    `auto` (CPU only: the first installed fast backend that passes, else torch; with texts_to_encode
    below AUTO_EXPORT_MIN_TEXTS, only a backend whose export is cached). precision `auto` tries a
    backend's native precision before float32, `f32` float32 only. The check compares normalised
    vectors of `sample` (topped up to CHECK_SIZE from CHECK_TEXTS) with torch's: min cosine >= COSINE_MIN.
    The name in use is `torch` or `<backend>-<precision>` (`openvino-bf16`, `openvino-f32`, `onnx-f32`).
    """
    from pipe_embed.pipeline.core.models import load_model, model_fingerprint

    require_backend(backend, precision)
    st = load_model(model, device=device, trust_remote_code=trust_remote_code)
    if max_length:
        st.max_seq_length = int(max_length)
    if backend == "torch":
        return st, "torch", "torch (as asked)"
    reason = _why_unsupported(st)
    if reason is not None:
        if backend == "auto":
            return st, "torch", f"torch: {reason}"
        raise PipeError(f"backend '{backend}' cannot run this model: {reason}", hint="use --backend torch or auto")
    candidates = [backend] if backend != "auto" else [b for b in FAST_BACKENDS if backend_installed(b)]
    if not candidates:
        return st, "torch", ('torch: no fast CPU backend installed (pip install "pipe-embed[openvino]" '
                             "encodes faster on CPU, same vectors)")
    fingerprint = model_fingerprint(model)
    if backend == "auto" and texts_to_encode is not None and texts_to_encode < AUTO_EXPORT_MIN_TEXTS:
        cached = [b for b in candidates
                  if export_root is not None and _read_meta(export_dir(export_root, fingerprint, b)) is not None]
        if not cached:
            return st, "torch", (f"torch: {texts_to_encode} texts to encode, fewer than {AUTO_EXPORT_MIN_TEXTS} "
                                 f"(exporting for {candidates[0]} would take longer)")
        candidates = cached
    texts = check_sample(sample)
    reference = _vectors(st, texts)
    reasons: list[str] = []
    failed = False  # whether the last attempt raised (rather than failed the check)
    with _export_root(export_root) as root:
        for name in candidates:
            try:
                export_model(st, name, root, fingerprint)  # once, whatever the precision
            except Exception as exc:  # any failure of an optional backend: say so, try the next
                if backend != "auto":
                    raise PipeError(f"backend '{name}' failed to export the model: {_first_line(exc)}",
                                    hint="use --backend torch or auto") from exc
                reasons.append(f"{name} failed ({_first_line(exc)})")
                failed = True
                continue
            tried: set[str] = set()
            for wanted in _precisions(name, precision):
                if wanted in tried:  # the native precision was float32 already
                    continue
                try:
                    original, actual = attach(st, name, root, fingerprint, wanted)
                except Exception as exc:  # noqa: BLE001 - e.g. a precision this CPU cannot compile
                    reasons.append(f"{name} ({wanted}) failed ({_first_line(exc)})")
                    failed = True
                    continue
                tried.add(actual)
                label = backend_label(name, actual)
                try:
                    cosine, why = min_cosine(reference, _vectors(st, texts)), None
                except Exception as exc:  # noqa: BLE001 - a backend that cannot encode fails the check
                    cosine, why = float("-inf"), _first_line(exc)
                if cosine >= COSINE_MIN:
                    earlier = f" ({'; '.join(reasons)})" if reasons else ""
                    return st, label, f"{label}: min cosine to torch {cosine:.6f} on {len(texts)} texts{earlier}"
                detach(st, original)
                failed = False
                reasons.append(f"{label} rejected ({why or f'min cosine to torch {cosine:.6f} < {COSINE_MIN}'} "
                               f"on {len(texts)} texts)")
    if backend != "auto":
        what = "failed to export or load the model" if failed else "does not reproduce torch's vectors"
        raise PipeError(f"backend '{backend}' {what}: {'; '.join(reasons)}", hint="use --backend torch or auto")
    return st, "torch", "torch: " + "; ".join(reasons)
