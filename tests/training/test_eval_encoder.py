"""The eval stage encodes through load_encoder (mine's checked fast encoder), for the model and its base alike."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core import encoders
from pipe_embed.pipeline.core.store import Artifact, StageResult, Store
from pipe_embed.training.config import EvalConfig
from pipe_embed.training.evaluate import data_dir_for, retrieval_task, run_eval


class CountingEncoder:
    """What load_encoder returned, with every text it encodes written down (all else passes through)."""

    def __init__(self, model: Any, label: str, log: list[tuple[str, str, str]]) -> None:
        self._model, self._label, self._log = model, label, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def encode_query(self, texts: list[str], **kwargs: Any) -> Any:
        self._log.extend((self._label, "query", t) for t in texts)
        return self._model.encode_query(texts, **kwargs)

    def encode_document(self, texts: list[str], **kwargs: Any) -> Any:
        self._log.extend((self._label, "document", t) for t in texts)
        return self._model.encode_document(texts, **kwargs)


def fake_train(store: Store, model: Path, data: Artifact) -> Artifact:
    """A train artifact (a copy of the tiny model) whose manifest names the tiny model as its base."""

    def build(work: Path) -> StageResult:
        shutil.copytree(model, work / "model")
        return StageResult()

    return store.run(stage="train", format_version=1, config={"model": str(model)}, inputs=[data],
                     build=build).artifact


def test_eval_scores_the_model_and_its_base_with_what_load_encoder_returns(store: Store, tiny_model_path: Path,
                                                                          compose_artifact, monkeypatch) -> None:
    real = encoders.load_encoder
    loaded: list[str] = []
    log: list[tuple[str, str, str]] = []

    def fast(model: Any, backend: str = "auto", device: str | None = None, **kwargs: Any) -> tuple[Any, str, str]:
        st, _, note = real(model, "torch", device, **kwargs)
        loaded.append(str(model))
        return CountingEncoder(st, f"encoder{len(loaded)}", log), "fake-fast", note

    monkeypatch.setattr(encoders, "load_encoder", fast)
    train = fake_train(store, tiny_model_path, compose_artifact)
    outcome = run_eval(store, EvalConfig(split="dev", reverse=True, device="cpu"), train.ref, None, compare_base=True)

    assert loaded == [str(train.file("model")), str(tiny_model_path)]  # the model, then its base
    assert outcome.artifact.stats["encoders"] == {"model": "fake-fast", "base": "fake-fast"}
    texts = set()
    for reverse in (False, True):
        task = retrieval_task(data_dir_for(store, compose_artifact), "dev", reverse=reverse)
        texts |= {q for qid, q in task.queries.items() if task.relevant.get(qid)} | set(task.corpus.values())
    for label in ("encoder1", "encoder2"):  # every text of both directions went through each returned encoder
        assert {t for who, _, t in log if who == label} == texts
        assert {kind for who, kind, _ in log if who == label} == {"query", "document"}
