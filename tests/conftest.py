"""Shared fixtures: offline environment, a tiny random model, an artifact store in tmp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random sentence-transformers model (built once per session)."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def store(tmp_path: Path):
    """An empty artifact store in a temporary directory."""
    from pipe_embed.pipeline.core.store import Store

    return Store(tmp_path / "data")


@pytest.fixture()
def chess_html() -> Path:
    """The saved Glossary of chess page (real MediaWiki HTML)."""
    return FIXTURES / "wikipedia" / "glossary_of_chess.html"


@pytest.fixture()
def slang_html() -> Path:
    """The saved Glossary of 2020s slang page (Vector 2022 markup)."""
    return FIXTURES / "wikipedia" / "glossary_of_2020s_slang.html"
