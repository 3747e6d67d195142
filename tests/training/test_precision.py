"""--precision: the choice for a described machine (pure), and a real bf16 autocast run saving an f32 model."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainerCallback

from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training import precision as precision_module
from pipe_embed.training.config import TrainConfig, load_train_config
from pipe_embed.training.precision import choose_precision, read_cpu_flags

AVX512 = {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"}
SAPPHIRE_RAPIDS = AVX512 | {"amx_tile", "amx_int8", "amx_bf16"}


def test_auto_on_a_cpu_with_amx_bf16_takes_bf16_autocast() -> None:
    choice = choose_precision("auto", "cpu", cpu_flags=SAPPHIRE_RAPIDS)
    assert (choice.precision, choice.bf16, choice.fp16) == ("bf16", True, False)
    assert choice.line() == "precision: bf16 autocast (CPU has amx_bf16)"


def test_auto_on_a_cpu_with_only_avx512_bf16_takes_bf16_autocast() -> None:
    choice = choose_precision("auto", "cpu", cpu_flags=AVX512)
    assert choice.precision == "bf16"
    assert choice.line() == "precision: bf16 autocast (CPU has avx512_bf16)"


def test_auto_on_a_cpu_without_native_bf16_stays_f32() -> None:
    choice = choose_precision("auto", "cpu", cpu_flags={"avx2", "avx512f"})
    assert (choice.precision, choice.bf16) == ("f32", False)
    assert choice.line() == "precision: f32 (CPU has no native bf16: neither amx_bf16 nor avx512_bf16)"
    assert choose_precision("auto", "mps").precision == "f32"


def test_auto_on_cuda_keeps_bf16_where_the_gpu_has_it_else_fp16() -> None:
    assert choose_precision("auto", "cuda", cuda_bf16=True).line() == "precision: bf16 autocast (GPU supports bf16)"
    assert choose_precision("auto", "cuda:1", cuda_bf16=False).precision == "fp16"
    assert choose_precision("auto", "cuda", cpu_flags=SAPPHIRE_RAPIDS, cuda_bf16=False).precision == "fp16"


def test_explicit_f32_and_bf16() -> None:
    assert choose_precision("f32", "cpu", cpu_flags=SAPPHIRE_RAPIDS).line() == "precision: f32 (--precision f32)"
    assert choose_precision("bf16", "cpu", cpu_flags=AVX512).line() == "precision: bf16 autocast (--precision bf16)"
    slow = choose_precision("bf16", "cpu", cpu_flags={"avx2"})
    assert slow.precision == "bf16" and "emulated" in slow.reason
    assert choose_precision("f32", "cuda", cuda_bf16=True).precision == "f32"
    with pytest.raises(ConfigError, match="'precision'.*CUDA"):
        choose_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="'precision'.*no bf16"):
        choose_precision("bf16", "cuda", cuda_bf16=False)
    with pytest.raises(ConfigError, match="'precision'.*mps"):
        choose_precision("bf16", "mps")


def test_cpu_flags_come_from_proc_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n")
    assert read_cpu_flags(info) == {"fpu", "avx2", "amx_bf16", "avx512_bf16"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_the_old_dtype_names_map_onto_precision(tmp_path: Path) -> None:
    assert load_train_config(None, {"precision": "bf16"}).precision == "bf16"
    with pytest.raises(ConfigError, match="'precision'"):
        load_train_config(None, {"precision": "bfloat16"})
    old = tmp_path / "pipe.toml"
    old.write_text('[train]\ndtype = "bfloat16"\n')
    with pytest.raises(ConfigError, match="'dtype' is now 'precision'") as err:
        load_train_config(old)
    assert 'precision = "bf16"' in (err.value.hint or "")


class ActivationDtypes(TrainerCallback):
    """Records the dtype of one linear layer's output in every training forward pass."""

    def __init__(self) -> None:
        self.seen: set = set()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch

        layer = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        layer.register_forward_hook(lambda _m, _i, out: self.seen.add(out.dtype) if torch.is_grad_enabled() else None)


def _config(model: Path, **overrides) -> TrainConfig:
    values = dict(model=str(model), batch_size=4, max_steps=2, min_steps=0, eval_steps=0, lr=1e-3, device="cpu",
                  patience=0, eval_base=False, seed=3)
    return TrainConfig(**{**values, **overrides})


def test_bf16_trains_under_cpu_autocast_and_saves_an_f32_model(store: Store, tiny_model_path: Path,
                                                               mine_artifact) -> None:
    import torch
    from safetensors import safe_open

    from pipe_embed.training.train import MODEL_DIR, run_train

    recorder = ActivationDtypes()
    art = run_train(store, _config(tiny_model_path, precision="bf16"), mine_artifact.ref, callbacks=[recorder]).artifact
    assert recorder.seen == {torch.bfloat16}  # transformers' Trainer (accelerate) ran forward in torch.autocast
    assert art.config["precision"] == "bf16"
    with safe_open(str(art.file(MODEL_DIR) / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float32}

    f32 = ActivationDtypes()
    plain = run_train(store, _config(tiny_model_path, precision="f32"), mine_artifact.ref, callbacks=[f32]).artifact
    assert f32.seen == {torch.float32} and plain.version != art.version  # a bf16 model is another artifact


def test_auto_says_which_it_chose_and_versions_the_choice(store: Store, tiny_model_path: Path, mine_artifact,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    from pipe_embed.training.train import run_train

    monkeypatch.setattr(precision_module, "read_cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    chosen = run_train(store, _config(tiny_model_path), mine_artifact.ref).artifact
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision:")]
    assert lines == ["precision: bf16 autocast (CPU has amx_bf16)"]
    assert chosen.config["precision"] == "bf16"
    explicit = run_train(store, _config(tiny_model_path, precision="bf16"), mine_artifact.ref)
    assert explicit.cached and explicit.artifact.version == chosen.version  # auto is recorded as what it chose

    monkeypatch.setattr(precision_module, "read_cpu_flags", lambda: frozenset({"avx2"}))
    elsewhere = run_train(store, _config(tiny_model_path), mine_artifact.ref).artifact
    assert elsewhere.config["precision"] == "f32" and elsewhere.version != chosen.version
    assert "precision: f32 (CPU has no native bf16" in capsys.readouterr().err


def test_the_old_dtype_flag_is_a_hidden_alias_of_precision() -> None:
    from typer.testing import CliRunner

    from pipe_embed.pipeline.cli import app
    from pipe_embed.pipeline.cli.train import apply_dtype_alias

    assert apply_dtype_alias({"dtype": "bfloat16", "precision": None})["precision"] == "bf16"
    assert apply_dtype_alias({"train__dtype": "float32"}, "train__")["train__precision"] == "f32"
    assert apply_dtype_alias({"dtype": None, "precision": "fp16"})["precision"] == "fp16"
    with pytest.raises(ConfigError, match="old name of --precision"):
        apply_dtype_alias({"dtype": "float32", "precision": "bf16"})
    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"}).output
    assert "--precision" in shown and "--dtype" not in shown
