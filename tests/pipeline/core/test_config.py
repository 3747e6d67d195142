"""Config files: messages name the file, the table and the field, and where a misplaced key belongs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipe_embed.pipeline.core import config as config_module
from pipe_embed.pipeline.core.config import load_config, option, register_config
from pipe_embed.pipeline.core.errors import ConfigError


@dataclass
class FirstConfig:
    """A stage config for the tests."""

    dev_fraction: float = option(0.1, "Share of anchors in dev.")
    seed: int = option(1, "Seed.")

    def validate(self) -> None:
        if not 0 <= self.dev_fraction < 1:
            raise ConfigError("field 'dev_fraction': must be in [0, 1)")


@dataclass
class SecondConfig:
    """Another stage's config."""

    num_negatives: int = option(3, "Negatives per anchor.")
    seed: int = option(2, "Seed.")


@pytest.fixture()
def registered(monkeypatch):
    monkeypatch.setattr(config_module, "_STAGE_CONFIGS", {})
    register_config("first", FirstConfig)
    register_config("second", SecondConfig)


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_field_names_file_table_and_a_close_spelling(tmp_path: Path):
    path = _file(tmp_path, "pipe.toml", "[first]\ndev_fractoin = 0.2\n")
    with pytest.raises(ConfigError) as info:
        load_config(FirstConfig, "first", path)
    assert str(info.value) == (f"{path}: [first] unknown field 'dev_fractoin' — did you mean 'dev_fraction'? "
                               "known fields: dev_fraction, seed")
    flat = _file(tmp_path, "flat.yaml", "bogus: 1\n")
    with pytest.raises(ConfigError, match=rf"^{flat}: unknown field 'bogus' — known fields: dev_fraction, seed$"):
        load_config(FirstConfig, "first", flat)


def test_a_key_of_another_stage_says_where_it_belongs(tmp_path: Path, registered):
    path = _file(tmp_path, "pipe.toml", "[first]\nnum_negatives = 5\n")
    with pytest.raises(ConfigError, match=r"\[first\] unknown field 'num_negatives': it is a setting of "
                                          r"\[second\] — move it under \[second\]"):
        load_config(FirstConfig, "first", path)
    flat = _file(tmp_path, "flat.json", json.dumps({"num_negatives": 5}))
    with pytest.raises(ConfigError, match=r"flat.json: unknown field 'num_negatives': it is a setting of \[second\]"):
        load_config(FirstConfig, "first", flat)
    assert load_config(SecondConfig, "second", path).num_negatives == 3  # [first] is not its table


def test_bad_values_and_files_are_one_clear_line(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"\[first\] field 'seed': 'many' is not a valid int"):
        load_config(FirstConfig, "first", _file(tmp_path, "a.toml", '[first]\nseed = "many"\n'))
    with pytest.raises(ConfigError, match=r"b.toml: \[first\] field 'dev_fraction': must be in \[0, 1\)"):
        load_config(FirstConfig, "first", _file(tmp_path, "b.toml", "[first]\ndev_fraction = 3.0\n"))
    with pytest.raises(ConfigError, match=r"'first' must be a table of settings"):
        load_config(FirstConfig, "first", _file(tmp_path, "c.toml", "first = 3\n"))
    with pytest.raises(ConfigError, match="is a directory, not a config file"):
        load_config(FirstConfig, "first", tmp_path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(FirstConfig, "first", tmp_path / "nope.toml")
    latin = tmp_path / "latin.toml"
    latin.write_bytes("[first]\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.toml: not UTF-8 text \(byte 14\)"):
        load_config(FirstConfig, "first", latin)
    with pytest.raises(ConfigError, match=r"d.toml: cannot parse config"):
        load_config(FirstConfig, "first", _file(tmp_path, "d.toml", "[first\n"))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused_from_files_and_flags(tmp_path: Path, value: str):
    file = tmp_path / "pipe.json"
    file.write_text(json.dumps({"first": {"dev_fraction": float(value)}}))
    with pytest.raises(ConfigError, match=r"\[first\] field 'dev_fraction': .* is not a finite number"):
        load_config(FirstConfig, "first", file)
    with pytest.raises(ConfigError, match="field 'dev_fraction': .* is not a finite number"):
        load_config(FirstConfig, "first", None, {"dev_fraction": float(value)})


def test_an_unknown_table_is_a_typo_with_a_did_you_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(config_module, "_STAGE_CONFIGS", {"first": FirstConfig, "second": SecondConfig})
    file = tmp_path / "pipe.toml"
    file.write_text("[frist]\nseed = 3\n")
    with pytest.raises(ConfigError, match=r"pipe.toml: unknown table \[frist\]") as info:
        load_config(FirstConfig, "first", file)
    assert "did you mean [first]" in (info.value.hint or "")
    file.write_text("[hf]\nrepo = 'x'\n[second]\nname = 'b'\n")  # the seed trainers' tables and other stages are fine
    assert load_config(FirstConfig, "first", file).seed == 1
