"""Trainer callbacks: JSON logs, evaluation and a checkpoint at every epoch end, a rich progress bar.

The JSON log (`logs/train_log.jsonl`) holds one line per optimizer step (loss, learning rate, grad
norm, epoch) and one per dev evaluation; it survives a killed run and is continued on resume, so
`summarize_log` can compute per-epoch means over the whole run afterwards.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.console import progress_bar
from transformers import TrainerCallback

STEP_LOG = "train_log.jsonl"


class JsonLogCallback(TrainerCallback):
    """Append every train/eval log of the trainer to a JSONL file, tagged with step and epoch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.time()
        path.parent.mkdir(parents=True, exist_ok=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if not logs:
            return
        epoch = float(state.epoch or 0.0)
        entry: dict[str, Any] = {"step": state.global_step, "epoch": round(epoch, 4),
                                 "epoch_index": max(math.ceil(epoch - 1e-9) - 1, 0),
                                 "elapsed_s": round(time.time() - self.started, 3)}
        if "loss" in logs:
            entry.update(kind="train", loss=logs["loss"], lr=logs.get("learning_rate"),
                         grad_norm=logs.get("grad_norm"))
        elif any(k.startswith("eval_") for k in logs):
            entry.update(kind="eval", **{k: v for k, v in logs.items() if k.startswith("eval_")})
        elif "train_runtime" in logs:
            entry.update(kind="end", **{k: v for k, v in logs.items() if k != "epoch"})
        else:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def truncate_log(path: Path, after_step: int) -> int:
    """Drop log lines past a checkpoint's step (a resumed run redoes them); returns lines kept."""
    if not path.is_file():
        return 0
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= after_step and json.loads(line).get("kind") != "end"]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return len(kept)


def read_log(path: Path) -> list[dict[str, Any]]:
    """All entries of a JSON step log."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarize_log(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch mean loss and last learning rate, and the dev evaluations of each epoch."""
    epochs: dict[int, dict[str, Any]] = {}
    for entry in entries:
        bucket = epochs.setdefault(entry["epoch_index"], {"epoch": entry["epoch_index"] + 1, "losses": [],
                                                         "evals": []})
        if entry.get("kind") == "train" and entry.get("loss") is not None:
            bucket["losses"].append(entry["loss"])
            bucket["last_lr"] = entry.get("lr")
            bucket["last_step"] = entry["step"]
        elif entry.get("kind") == "eval":
            bucket["evals"].append({k: v for k, v in entry.items() if k.startswith("eval_") or k == "step"})
    out = []
    for index in sorted(epochs):
        bucket = epochs[index]
        losses = bucket.pop("losses")
        bucket["steps"] = len(losses)
        bucket["mean_loss"] = sum(losses) / len(losses) if losses else None
        out.append(bucket)
    return out


class EpochEndCallback(TrainerCallback):
    """Evaluate (when there is a dev split) and save a checkpoint at every epoch end, once per step."""

    def __init__(self, evaluate: bool) -> None:
        self.evaluate = evaluate
        self.last_eval_step = -1
        self.last_save_step = -1

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.last_eval_step = state.global_step

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.last_save_step = state.global_step

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        if self.evaluate and self.last_eval_step != state.global_step:
            control.should_evaluate = True
        if self.last_save_step != state.global_step:
            control.should_save = True
        return control


class ProgressCallback(TrainerCallback):
    """A rich progress bar over optimizer steps (hidden when quiet or not on a terminal)."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._advance: Callable[..., None] | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._advance = self._stack.enter_context(progress_bar("train", state.max_steps or None))
        if state.global_step:
            self._advance(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._advance is not None:
            self._advance(1)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.close()

    def close(self) -> None:
        """End the bar (also after an exception)."""
        self._advance = None
        self._stack.close()


__all__ = ["JsonLogCallback", "EpochEndCallback", "ProgressCallback", "truncate_log", "read_log",
           "summarize_log", "STEP_LOG"]
