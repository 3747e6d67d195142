"""Fast CPU encoders: export once per weights and reload, the cosine check, precisions, the fallback notes.

The real-backend tests run where the extra is installed (CI: the dev extra brings OpenVINO); the
choice logic is also tested everywhere with a stand-in backend that runs the tiny model itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipe_embed.pipeline.core import encoders
from pipe_embed.pipeline.core.encoders import (
    CHECK_SIZE,
    CHECK_TEXTS,
    check_sample,
    export_dir,
    load_encoder,
)
from pipe_embed.pipeline.core.errors import ConfigError, MissingDependency, PipeError
from pipe_embed.pipeline.core.models import load_model, model_fingerprint

REAL_BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(not encoders.backend_installed(name),
                                                reason=f'{name} not installed (pip install "pipe-embed[{name}]")'))
    for name in encoders.FAST_BACKENDS
]


def torch_vectors(path: Path, texts: list[str] = CHECK_TEXTS) -> np.ndarray:
    return load_model(path).encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def runs_compiled(st) -> bool:
    first, attr = encoders._transformer_slot(st)
    return type(getattr(first, attr)).__name__ == "CompiledTransformer"


@pytest.fixture(scope="module")
def exported(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """Per real backend, an export root holding the tiny model's export (made once per module)."""
    roots: dict[str, Path] = {}

    def get(backend: str) -> Path:
        if backend not in roots:
            root = tmp_path_factory.mktemp(f"exports-{backend}")
            st, name, note = load_encoder(tiny_model_path, backend, export_root=root, precision="f32")
            assert name == f"{backend}-f32" and runs_compiled(st) and "cosine" in note
            assert np.allclose(st.encode(CHECK_TEXTS, normalize_embeddings=True), torch_vectors(tiny_model_path),
                               atol=1e-5)
            roots[backend] = root
        return roots[backend]

    return get


def copy_of(root: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(root, tmp_path / "exports"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", REAL_BACKENDS)
def test_an_export_keyed_by_the_weights_is_reloaded_without_exporting(backend: str, exported, tiny_model_path: Path,
                                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = copy_of(exported(backend), tmp_path)
    folder = export_dir(root, model_fingerprint(tiny_model_path), backend)
    assert (folder / encoders.EXPORT_META).is_file()

    def no_export(*_args):
        raise AssertionError("exported again although the export is cached")

    monkeypatch.setitem(encoders.EXPORTERS, backend, no_export)
    st, name, _ = load_encoder(tiny_model_path, backend, export_root=root, precision="f32")
    assert name == f"{backend}-f32" and runs_compiled(st)
    assert np.allclose(st.encode(CHECK_TEXTS, normalize_embeddings=True), torch_vectors(tiny_model_path), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("backend", REAL_BACKENDS)
def test_a_damaged_export_is_redone_from_the_weights(backend: str, exported, tiny_model_path: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    root = copy_of(exported(backend), tmp_path)
    folder = export_dir(root, model_fingerprint(tiny_model_path), backend)
    for path in folder.iterdir():
        if path.name != encoders.EXPORT_META:
            path.write_bytes(b"damaged")
    calls = []
    real = encoders.EXPORTERS[backend]
    monkeypatch.setitem(encoders.EXPORTERS, backend, lambda *args: calls.append(1) or real(*args))
    st, name, _ = load_encoder(tiny_model_path, backend, export_root=root, precision="f32")
    assert name == f"{backend}-f32" and calls == [1]
    assert np.allclose(st.encode(CHECK_TEXTS, normalize_embeddings=True), torch_vectors(tiny_model_path), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("backend", REAL_BACKENDS)
def test_without_an_export_root_nothing_is_left_behind(backend: str, tiny_model_path: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    st, name, _ = load_encoder(tiny_model_path, backend)
    assert name.startswith(f"{backend}-") and runs_compiled(st)
    assert list(tmp_path.iterdir()) == []


def test_auto_prefers_openvino_when_several_are_installed(tiny_model_path: Path, tmp_path: Path):
    if not all(encoders.backend_installed(b) for b in encoders.FAST_BACKENDS):
        pytest.skip("needs both openvino and onnx installed")
    _, name, _ = load_encoder(tiny_model_path, "auto", export_root=tmp_path)
    assert name.startswith("openvino-")


@pytest.mark.slow
@pytest.mark.skipif(not encoders.backend_installed("openvino"), reason="openvino not installed")
def test_openvino_native_precision_is_kept_only_within_the_cosine_gate(tiny_model_path: Path, tmp_path: Path):
    """Whatever this CPU computes in natively (bf16 on AMX, else f32): kept only at min cosine >= 0.9999."""
    st, name, note = load_encoder(tiny_model_path, "openvino", export_root=tmp_path)
    assert name in ("openvino-bf16", "openvino-f16", "openvino-f32") and runs_compiled(st)
    cosine = encoders.min_cosine(torch_vectors(tiny_model_path),
                                 st.encode(CHECK_TEXTS, normalize_embeddings=True, convert_to_numpy=True))
    assert cosine >= encoders.COSINE_MIN - 1e-6, note
    assert note.startswith(f"{name}: min cosine to torch")


# -- the choice, with a stand-in backend (runs everywhere) -----------------------------------------

@pytest.fixture()
def stand_in(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make 'openvino' a backend that 'exports' nothing and runs the tiny model's transformer in torch: in
    `native` precision (bf16 unless set) and f32, with per-precision `noise` (set it to fail the check).
    Returns a dict of knobs and counters."""
    import torch
    from transformers import AutoModel

    state = {"noise": {"native": 0.0, "f32": 0.0}, "native": "bf16", "exports": 0, "fail_export": None,
             "compiled": []}
    hf = AutoModel.from_pretrained(str(tiny_model_path)).eval()

    def export(_hf, names, _example, target: Path) -> None:
        if state["fail_export"]:
            raise RuntimeError(state["fail_export"])
        state["exports"] += 1
        (target / "model.bin").write_bytes(b"stand-in")

    def runner(folder: Path, precision: str):
        assert (folder / "model.bin").is_file()
        state["compiled"].append(precision)
        noise = state["noise"][precision]

        def run(feed):
            with torch.no_grad():
                out = hf(**{k: torch.from_numpy(v) for k, v in feed.items()}).last_hidden_state.numpy()
            if noise:
                out = out + np.random.default_rng(0).normal(scale=noise, size=out.shape).astype(np.float32)
            return out
        return run, state["native"] if precision == "native" else "f32"

    monkeypatch.setitem(encoders.EXPORTERS, "openvino", export)
    monkeypatch.setitem(encoders.RUNNERS, "openvino", runner)
    monkeypatch.setitem(encoders.BACKEND_MODULES, "openvino", ())  # "installed"
    monkeypatch.setattr(encoders, "FAST_BACKENDS", ("openvino",))
    return state


def test_auto_takes_the_native_precision_when_its_vectors_match_torch(stand_in, tiny_model_path: Path,
                                                                      tmp_path: Path):
    st, name, note = load_encoder(tiny_model_path, "auto", export_root=tmp_path)
    assert name == "openvino-bf16" and runs_compiled(st) and stand_in["exports"] == 1
    assert stand_in["compiled"] == ["native"]
    assert note.startswith("openvino-bf16: min cosine to torch 1.0") and f"on {len(CHECK_TEXTS)} texts" in note
    assert np.allclose(st.encode(CHECK_TEXTS, normalize_embeddings=True), torch_vectors(tiny_model_path), atol=1e-5)
    load_encoder(tiny_model_path, "auto", export_root=tmp_path)
    assert stand_in["exports"] == 1  # cached by the weights' hash


def test_a_native_precision_that_moves_vectors_gives_way_to_float32(stand_in, tiny_model_path: Path,
                                                                     tmp_path: Path):
    stand_in["noise"]["native"] = 0.05
    st, name, note = load_encoder(tiny_model_path, "auto", export_root=tmp_path)
    assert name == "openvino-f32" and stand_in["compiled"] == ["native", "f32"] and stand_in["exports"] == 1
    assert note.startswith("openvino-f32: min cosine to torch 1.0")
    assert "(openvino-bf16 rejected (min cosine to torch" in note and "< 0.9999" in note
    assert np.allclose(st.encode(CHECK_TEXTS, normalize_embeddings=True), torch_vectors(tiny_model_path), atol=1e-5)


def test_precision_f32_never_tries_the_native_one(stand_in, tiny_model_path: Path, tmp_path: Path):
    _, name, _ = load_encoder(tiny_model_path, "auto", export_root=tmp_path, precision="f32")
    assert name == "openvino-f32" and stand_in["compiled"] == ["f32"]
    with pytest.raises(ConfigError, match="field 'precision'.*auto, f32"):
        load_encoder(tiny_model_path, "auto", precision="int8")


def test_a_cpu_whose_native_precision_is_float32_compiles_once(stand_in, tiny_model_path: Path, tmp_path: Path):
    stand_in["native"] = "f32"
    stand_in["noise"]["native"] = 0.05  # the same graph in f32 twice would fail twice: tried once
    _, name, note = load_encoder(tiny_model_path, "auto", export_root=tmp_path)
    assert name == "torch" and stand_in["compiled"] == ["native"]
    assert note.count("rejected") == 1 and note.startswith("torch: openvino-f32 rejected")


def test_new_weights_get_their_own_export(stand_in, tiny_model_path: Path, tmp_path: Path):
    from tests.tiny_model import build_tiny_model

    other = build_tiny_model(tmp_path / "other", seed=1)
    load_encoder(tiny_model_path, "auto", export_root=tmp_path / "exports")
    load_encoder(other, "auto", export_root=tmp_path / "exports")
    assert stand_in["exports"] == 2
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == sorted(
        {model_fingerprint(tiny_model_path), model_fingerprint(other)})


def test_auto_falls_back_to_torch_when_the_check_fails(stand_in, tiny_model_path: Path, tmp_path: Path):
    stand_in["noise"] = {"native": 0.05, "f32": 0.05}
    st, name, note = load_encoder(tiny_model_path, "auto", export_root=tmp_path)
    assert name == "torch" and not runs_compiled(st)
    assert note.startswith("torch: openvino-bf16 rejected (min cosine to torch") and "< 0.9999" in note
    assert "; openvino-f32 rejected (min cosine to torch" in note
    assert np.allclose(st.encode(CHECK_TEXTS, normalize_embeddings=True), torch_vectors(tiny_model_path), atol=1e-6)


def test_an_asked_backend_that_fails_the_check_is_an_error(stand_in, tiny_model_path: Path, tmp_path: Path):
    stand_in["noise"] = {"native": 0.05, "f32": 0.05}
    with pytest.raises(PipeError, match="does not reproduce torch's vectors.*use --backend torch or auto"):
        load_encoder(tiny_model_path, "openvino", export_root=tmp_path)


def test_a_failed_export_falls_back_under_auto_and_fails_when_asked(stand_in, tiny_model_path: Path,
                                                                    tmp_path: Path):
    stand_in["fail_export"] = "unsupported operation aten::frobnicate"
    _, name, note = load_encoder(tiny_model_path, "auto", export_root=tmp_path)
    assert name == "torch" and note == "torch: openvino failed (unsupported operation aten::frobnicate)"
    assert not any(tmp_path.rglob("*.partial"))  # the unfinished export is removed
    with pytest.raises(PipeError, match="failed to export the model: unsupported operation"):
        load_encoder(tiny_model_path, "openvino", export_root=tmp_path)


def test_the_check_uses_the_given_texts(stand_in, tiny_model_path: Path, tmp_path: Path):
    texts = [f"text number {i} " + "word " * i for i in range(100)]
    _, _, note = load_encoder(tiny_model_path, "auto", export_root=tmp_path, sample=texts)
    assert f"on {CHECK_SIZE} texts" in note
    assert check_sample(texts) == texts[:16] + texts[-16:]
    few = check_sample(["a", "a", " ", "b"])  # the first texts to encode, topped up to CHECK_SIZE
    assert few[:2] == ["a", "b"] and few[2:] == CHECK_TEXTS[:CHECK_SIZE - 2] and check_sample([]) == CHECK_TEXTS


def test_auto_exports_only_for_enough_texts_but_always_uses_a_cached_export(stand_in, tiny_model_path: Path,
                                                                            tmp_path: Path):
    few = encoders.AUTO_EXPORT_MIN_TEXTS - 1
    _, name, note = load_encoder(tiny_model_path, "auto", export_root=tmp_path, texts_to_encode=few)
    assert name == "torch" and stand_in["exports"] == 0
    assert note == f"torch: {few} texts to encode, fewer than 256 (exporting for openvino would take longer)"
    _, name, _ = load_encoder(tiny_model_path, "auto", export_root=tmp_path, texts_to_encode=few + 1)
    assert name == "openvino-bf16" and stand_in["exports"] == 1
    _, name, _ = load_encoder(tiny_model_path, "auto", export_root=tmp_path, texts_to_encode=3)
    assert name == "openvino-bf16" and stand_in["exports"] == 1
    _, name, _ = load_encoder(tiny_model_path, "openvino", export_root=tmp_path / "other", texts_to_encode=3)
    assert name == "openvino-bf16" and stand_in["exports"] == 2  # asked for: exported whatever the size


def test_auto_without_a_fast_backend_says_how_to_get_one(tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(encoders, "backend_installed", lambda _name: False)
    st, name, note = load_encoder(tiny_model_path, "auto")
    assert name == "torch" and not runs_compiled(st)
    assert note == 'torch: no fast CPU backend installed (pip install "pipe-embed[openvino]" encodes faster on CPU, same vectors)'


@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_an_asked_backend_that_is_missing_names_its_pip_line(backend: str, tiny_model_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(encoders.BACKEND_MODULES, backend, ("pipe_embed_no_such_runtime",))
    with pytest.raises(MissingDependency, match=rf'pip install "pipe-embed\[{backend}\]"'):
        load_encoder(tiny_model_path, backend)


def test_torch_is_torch_and_an_unknown_backend_names_the_choices(tiny_model_path: Path):
    st, name, note = load_encoder(tiny_model_path, "torch", max_length=16)
    assert (name, note) == ("torch", "torch (as asked)") and not runs_compiled(st)
    assert st.max_seq_length == 16
    with pytest.raises(ConfigError, match="field 'backend'.*auto, torch, openvino, onnx"):
        load_encoder(tiny_model_path, "tensorrt")
