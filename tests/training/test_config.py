"""TrainConfig: our own layout, the seed trainers' config.json, and errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.training.config import (
    is_seed_config,
    load_eval_config,
    load_train_config,
)

SEED = {
    "model_id": "sentence-transformers/all-MiniLM-L6-v2",
    "tokenizer_id": None,
    "hf": {"trust_remote_code": False, "local_files_only": True},
    "device": {"device": "cpu", "dtype": "float32"},
    "train": {"batch_size": 16, "epochs": 2, "max_length": 128, "grad_accum_steps": 2, "pad_to_multiple_of": 8,
              "fp16": False, "grad_checkpointing": False, "num_workers": 0, "steps_per_epoch": 5},
    "optim": {"name": "adamw", "lr": 3e-5, "weight_decay": 0.0, "warmup_ratio": 0.05},
    "data": {"pairs_path": "pairs.jsonl", "stream": False},
    "output": {"save_dir": "out", "save_name": "model", "save_metrics": True},
}


def write(tmp_path: Path, data: dict, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_seed_config_maps_every_section(tmp_path: Path) -> None:
    cfg = load_train_config(write(tmp_path, SEED))
    assert cfg.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert cfg.local_files_only is True and cfg.trust_remote_code is False
    assert (cfg.device, cfg.precision) == ("cpu", "f32")
    assert (cfg.batch_size, cfg.epochs, cfg.max_length, cfg.grad_accum_steps) == (16, 2, 128, 2)
    assert (cfg.pad_to_multiple_of, cfg.steps_per_epoch, cfg.num_workers) == (8, 5, 0)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.warmup_ratio) == ("auto", 3e-5, 0.0, 0.05)
    assert cfg.pairs_path == "pairs.jsonl"
    assert cfg.export_dir == str(Path("out") / "model")


def test_seed_fp16_sets_precision_and_flags_override_file(tmp_path: Path) -> None:
    data = json.loads(json.dumps(SEED))
    data["train"]["fp16"] = True
    cfg = load_train_config(write(tmp_path, data), {"lr": 1e-4, "batch_size": None})
    assert cfg.precision == "fp16"
    assert cfg.lr == 1e-4 and cfg.batch_size == 16  # None flags leave the file's value


@pytest.mark.parametrize("section,key,value,named", [
    ("train", "batch_size", "big", "train.batch_size"),
    ("train", "batch_size", 0, "train.batch_size"),
    ("optim", "lr", "fast", "optim.lr"),
    ("device", "dtype", "int3", "device.dtype"),
    ("optim", "name", "nadamx", "optim.name"),
    ("train", "batchsize", 8, "train.batchsize"),
    ("hf", "trust_remote_code", "perhaps", "hf.trust_remote_code"),
])
def test_bad_seed_field_is_named(tmp_path: Path, section: str, key: str, value: object, named: str) -> None:
    data = json.loads(json.dumps(SEED))
    data[section][key] = value
    with pytest.raises(ConfigError) as err:
        load_train_config(write(tmp_path, data))
    assert f"'{named}'" in err.value.line()


def test_own_layout_toml_and_named_errors(tmp_path: Path) -> None:
    path = tmp_path / "pipe.toml"
    path.write_text('[train]\nloss = "gist"\nbatch_size = 8\n[mine]\nk = 3\n', encoding="utf-8")
    cfg = load_train_config(path)
    assert (cfg.loss, cfg.batch_size) == ("gist", 8)
    assert not is_seed_config({"train": {"batch_size": 8}})
    path.write_text('[train]\nloss = "triplet"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="'loss'"):
        load_train_config(path)
    with pytest.raises(ConfigError, match="'warmup_ratio'"):
        load_train_config(None, {"warmup_ratio": 1.5})
    with pytest.raises(ConfigError, match="'device'"):
        load_train_config(None, {"device": "tpu"})
    with pytest.raises(ConfigError, match="'optimizer'"):
        load_train_config(None, {"optimizer": "nadamx"})
    assert load_train_config(None, {"optimizer": "adafactor"}).optimizer == "adafactor"


def test_qlora_implies_lora_and_eval_config_ignores_seed_file(tmp_path: Path) -> None:
    assert load_train_config(None, {"qlora": True}).lora is True
    assert load_eval_config(write(tmp_path, SEED)).split == "auto"
