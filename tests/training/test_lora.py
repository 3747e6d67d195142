"""LoRA errors say what to fix: a peft/transformers version clash asks for a pip line, not module names."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.lora import add_lora
from pipe_embed.training.train import prepare_model


def lora_model(tiny_model_path: Path, **overrides):
    config = TrainConfig(model=str(tiny_model_path), device="cpu", lora=True, lora_r=4, **overrides)
    return prepare_model(config, "cpu"), config


def test_a_peft_version_clash_says_which_peft_to_install(tiny_model_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers.integrations.peft as hf_peft

    model, config = lora_model(tiny_model_path)
    # transformers' own check, as when a newer transformers meets the installed peft
    monkeypatch.setattr(hf_peft, "MIN_PEFT_VERSION", "99.1.0", raising=True)
    with pytest.raises(PipeError) as caught:
        add_lora(model, config)
    error = caught.value
    assert not isinstance(error, ConfigError)
    assert "pip install 'peft>=99.1.0'" in error.line() and "needs peft>=99.1.0" in error.line()
    assert "lora_target_modules" not in error.line() and "attention" not in error.line()


def test_a_target_module_mismatch_names_the_field_and_the_models_layers(tiny_model_path: Path) -> None:
    model, config = lora_model(tiny_model_path, lora_target_modules=["q_proj", "v_proj"])
    with pytest.raises(ConfigError) as caught:
        add_lora(model, config)
    line = caught.value.line()
    assert "field 'lora_target_modules'" in line and "--lora-target-modules" in line
    assert "query" in line and "value" in line  # the tiny BERT's real projection names
    assert "pip install" not in line


def test_peft_default_targets_attach_to_bert(tiny_model_path: Path) -> None:
    model, config = lora_model(tiny_model_path)
    add_lora(model, config)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


# -- adapters saved on their own, and loadable again ------------------------------------------------------

def test_no_merge_writes_the_adapter_alone_and_it_loads_three_ways(store, tiny_model_path: Path, mine_artifact) -> None:
    import json

    import numpy as np
    from sentence_transformers import SentenceTransformer

    from pipe_embed.pipeline.core.models import load_model
    from pipe_embed.training.train import MODEL_DIR, run_train

    config = TrainConfig(model=str(tiny_model_path), device="cpu", lora=True, lora_r=4, lora_alpha=8, lora_merge=False,
                         batch_size=4, max_steps=3, lr=5e-2, eval_steps=0, patience=0, eval_base=False,
                         warmup_ratio=0.0)
    art = run_train(store, config, mine_artifact.ref).artifact
    adapter_dir = art.file(MODEL_DIR)
    assert (adapter_dir / "adapter_config.json").is_file() and (adapter_dir / "adapter_model.safetensors").is_file()
    assert not (adapter_dir / "model.safetensors").exists()  # no full copy of the base weights
    adapter = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 4
    assert Path(adapter["base_model_name_or_path"]) == tiny_model_path
    card = (adapter_dir / "README.md").read_text()
    assert "LoRA adapter" in card and "load_adapter" in card and str(tiny_model_path) in card

    texts = ["rook", "a piece that moves diagonally across the board"]
    # 1. sentence-transformers alone: the base named in adapter_config.json, with the adapter on top
    plain = SentenceTransformer(str(adapter_dir), device="cpu").encode(texts)
    base = SentenceTransformer(str(tiny_model_path), device="cpu")
    assert not np.allclose(plain, base.encode(texts), atol=1e-5)  # the adapter changed something
    # 2. onto a base model the user already has
    base.load_adapter(str(adapter_dir))
    assert np.allclose(base.encode(texts), plain, atol=1e-6)
    # 3. pipe's own loader (eval, iterate)
    assert np.allclose(load_model(str(adapter_dir), device="cpu").encode(texts), plain, atol=1e-6)


def test_peft_loads_the_adapter_onto_the_hf_base(store, tiny_model_path: Path, mine_artifact) -> None:
    import torch
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from pipe_embed.training.train import MODEL_DIR, run_train

    config = TrainConfig(model=str(tiny_model_path), device="cpu", lora=True, lora_r=4, lora_merge=False,
                         batch_size=4, max_steps=2, lr=5e-2, eval_steps=0, patience=0, eval_base=False,
                         warmup_ratio=0.0)
    adapter_dir = run_train(store, config, mine_artifact.ref).artifact.file(MODEL_DIR)
    st = SentenceTransformer(str(adapter_dir), device="cpu")
    features = st.tokenize(["rook"])
    with torch.no_grad():
        expected = st[0].auto_model(**features).last_hidden_state
        peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(str(tiny_model_path)), str(adapter_dir))
        got = peft_model(**features).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-5)


def test_qlora_without_bitsandbytes_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from pipe_embed.training.train import check_qlora

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ConfigError) as caught:
        check_qlora(TrainConfig(qlora=True, lora=True), "cuda")
    line = caught.value.line()
    assert "'qlora'" in line and "bitsandbytes" in line and "pip install bitsandbytes" in line and "\n" not in line
    with pytest.raises(ConfigError) as caught:
        check_qlora(TrainConfig(qlora=True, lora=True), "cpu")
    line = caught.value.line()
    assert "CUDA GPU" in line and "--lora without --qlora" in line and "\n" not in line
