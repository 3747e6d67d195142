"""`pipe train` under torchrun: 2 CPU processes (gloo) train data-parallel, rank 0 alone writes the artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipe_embed.pipeline.core.store import Artifact, Store
from pipe_embed.training import distributed
from pipe_embed.training.config import TrainConfig
from pipe_embed.training.train import run_train
from tests.training.conftest import make_compose, make_mine

FLAGS = ["--max-steps", "4", "--batch-size", "2", "--device", "cpu", "--eval-steps", "2", "--lr", "1e-3"]


def torchrun(data: Path, model: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 pipe train …` (the console script: the CLI has no __main__)."""
    pipe = Path(sys.executable).with_name("pipe")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PIPE_LOG_DIR": str(tmp / "logs")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(pipe), "train", "--data-dir", str(data), "--model", str(model), *FLAGS, *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def same_names(paths) -> set[str]:
    """Relative paths, TensorBoard event files by folder (their names hold the time, host and pid)."""
    return {p.rsplit("/", 1)[0] + "/<events>" if "events.out.tfevents" in p else p for p in paths}


def layout(artifact: Artifact) -> set[str]:
    """What an artifact holds on disk."""
    return same_names(p.relative_to(artifact.path).as_posix() for p in artifact.path.rglob("*"))


@pytest.mark.slow
def test_two_gloo_processes_train_one_loadable_artifact(tiny_model_path: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    data = tmp_path / "data"
    store = Store(data)
    mine = make_mine(store, make_compose(store))
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    done = torchrun(data, tiny_model_path, scratch)
    assert done.returncode == 0, done.stderr[-3000:]
    refs = [line for line in done.stdout.splitlines() if line.startswith("train@")]
    assert len(refs) == 2 and refs[0] == refs[1]  # both ranks report rank 0's artifact
    art = store.resolve(refs[0])
    assert art.inputs == [{"stage": "mine", "version": mine.version}]
    assert [a.ref for a in store.versions("train")] == [art.ref]  # one artifact, nothing half-written
    assert not [p for p in (data / "train").iterdir() if p.name.startswith((".work-", ".tmp-"))]
    assert not list(scratch.glob("pipe-train-rank*"))  # the other rank's scratch directory is gone
    train = art.metrics["train"]
    assert train["steps"] == 4
    # 4 steps of 2 ranks x 2 rows pass the 13 rows more than once; one process would be at 4/7 of an epoch
    assert train["epochs"] > 1.0
    assert "dev" in art.metrics and "dev_base" in art.metrics  # rank 0 evaluated

    model = SentenceTransformer(str(art.file("model")), device="cpu")
    assert model.encode(["rook", "a chess piece"]).shape[0] == 2

    # The same layout as a single-process run of the same settings.
    alone = Store(tmp_path / "alone")
    make_mine(alone, make_compose(alone))
    single = run_train(alone, TrainConfig(model=str(tiny_model_path), max_steps=4, batch_size=2, device="cpu",
                                          eval_steps=2, lr=1e-3)).artifact
    assert layout(art) == layout(single)
    assert same_names(json.loads(art.file("manifest.json").read_text())["files"]) == \
        same_names(json.loads(single.file("manifest.json").read_text())["files"])

    again = torchrun(data, tiny_model_path, scratch)  # a cache hit on rank 0 releases the other rank at once
    assert again.returncode == 0, again.stderr[-3000:]
    assert [line for line in again.stdout.splitlines() if line.startswith("train@")] == refs
    assert [a.ref for a in store.versions("train")] == [art.ref]


def test_a_single_process_is_not_a_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched() and distributed.current().main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launched() and distributed.current() == distributed.Rank(3, 4, 1)
    assert not distributed.current().main
