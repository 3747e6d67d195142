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
