"""Plug points: a registry of entries whose settings are nested config tables and help panels."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pipe_embed.pipeline.cli.options import config_parameters, overrides
from pipe_embed.pipeline.core.config import (
    build_config,
    keep_sections,
    load_config,
    option,
    params_of,
    versioned_dict,
)
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.plugins import Plugin, Registry


@dataclass
class AlphaParams:
    depth: int = option(3, "How deep alpha looks.")
    threads: int = option(1, "Only changes the speed.", versioned=False)

    def validate(self) -> None:
        if self.depth < 1:
            raise ConfigError("field 'depth': must be at least 1")


@dataclass
class BetaParams:
    width: float = option(0.5, "How wide beta looks.")


TOYS: Registry[Plugin] = Registry("toy method", "method", {})
TOYS.register(Plugin("alpha", "looks deep", AlphaParams))
TOYS.register(Plugin("beta", "looks wide", BetaParams))
TOYS.register(Plugin("gamma", "has no settings"))


@dataclass
class ToyConfig:
    SECTIONS: ClassVar[Registry[Plugin]] = TOYS
    method: str = option("alpha", "Which toy.")
    size: int = option(2, "Common to all toys.")
    params: dict[str, Any] = option({}, "Each toy's settings.", cli=False)


def test_defaults_fill_every_section_and_typed_access_finds_them():
    config = build_config(ToyConfig, {})
    assert set(config.params) == {"alpha", "beta"}
    assert params_of(config, AlphaParams).depth == 3
    assert params_of(config, BetaParams).width == 0.5


def test_a_file_table_per_entry_then_flags_on_top(tmp_path: Path):
    file = tmp_path / "pipe.toml"
    file.write_text("[toy]\nsize = 5\n[toy.alpha]\ndepth = 7\nthreads = 4\n")
    config = load_config(ToyConfig, "toy", file, {"beta": {"width": 0.9}})
    assert config.size == 5 and params_of(config, AlphaParams).depth == 7
    assert params_of(config, BetaParams).width == 0.9
    again = load_config(ToyConfig, "toy", file, {"alpha": {"depth": 9}})
    assert params_of(again, AlphaParams).depth == 9 and params_of(again, AlphaParams).threads == 4


def test_errors_name_the_section_table(tmp_path: Path):
    file = tmp_path / "pipe.toml"
    file.write_text("[toy.alpha]\ndepth = 0\n")
    with pytest.raises(ConfigError, match=r"pipe.toml: \[toy.alpha\] field 'depth'"):
        load_config(ToyConfig, "toy", file)
    file.write_text("[toy.alpah]\ndepth = 2\n")
    with pytest.raises(ConfigError, match="unknown section 'alpah'") as info:
        load_config(ToyConfig, "toy", file)
    assert "did you mean 'alpha'" in (info.value.hint or "")
    file.write_text("[toy]\ndepth = 2\n")
    with pytest.raises(ConfigError, match=r"unknown field 'depth': it is a setting of \[toy.alpha\]"):
        load_config(ToyConfig, "toy", file)


def test_versions_skip_unversioned_section_fields_and_unused_sections():
    config = build_config(ToyConfig, {"alpha": {"threads": 8}})
    assert "threads" not in versioned_dict(config)["params"]["alpha"]
    assert versioned_dict(config)["params"]["alpha"]["depth"] == 3
    only = keep_sections(config, ["alpha"])
    assert set(only.params) == {"alpha"}
    assert versioned_dict(only) != versioned_dict(config)
    assert dataclasses.asdict(only)["params"]["alpha"]["threads"] == 8  # the manifest still records it


def test_cli_flags_come_in_one_panel_per_entry_and_map_back_to_sections():
    params = {p.name: p for p in config_parameters(ToyConfig)}
    assert {"method", "size", "alpha__depth", "alpha__threads", "beta__width"} <= set(params)
    panel = params["alpha__depth"].annotation.__metadata__[0].rich_help_panel
    assert panel == "--method alpha: looks deep"
    assert params["size"].annotation.__metadata__[0].rich_help_panel is None
    values = {name: None for name in params} | {"size": 4, "alpha__depth": 6}
    assert overrides(ToyConfig, values) == {"size": 4, "alpha": {"depth": 6}}


def test_registry_names_and_unknown_entries():
    assert TOYS.names() == ["alpha", "beta", "gamma"]
    assert "gamma" in TOYS
    with pytest.raises(ConfigError, match="unknown toy method 'alhpa'") as info:
        TOYS.get("alhpa")
    assert "did you mean 'alpha'" in (info.value.hint or "")
