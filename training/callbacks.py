"""Trainer callbacks: JSON logs, evaluation and a checkpoint at every epoch end, a progress bar.

The JSON log (`logs/train_log.jsonl`) holds one line per optimizer step (loss, learning rate, grad
norm, epoch) and one per dev evaluation; it survives a killed run and is continued on resume, so
`summarize_log` can compute per-epoch means over the whole run afterwards. `EvalReportCallback`
hands each dev evaluation to an outside judge (a sweep's pruner) that may stop the run.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback

from pipe_embed.pipeline.core.console import console, info, quiet
from pipe_embed.pipeline.core.errors import PipeError

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
    """A rich bar over optimizer steps showing the latest loss and dev metric (hidden with -q).

    Off a terminal the bar is hidden and each dev evaluation prints one plain line instead, plus a
    line with the time left at most every `every_s` seconds, so a run piped into a log is never silent
    for long.
    """

    def __init__(self, description: str = "train", metric: str = "mrr@10", key: str | None = None,
                 every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.description = description
        self.metric = metric
        self.key = key  # the exact metric to show (e.g. eval_mean_cosine_mrr@10), else the first *_<metric>
        self.label = "eval mean" if key and key.startswith("eval_mean_") else "dev"
        self.loss: float | None = None
        self.dev: float | None = None
        self.best: float | None = None
        self.evaluating = False
        self.note = ""
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total: int | None = None
        self.every_s = every_s
        self._clock = clock
        self._started: tuple[float, int] | None = None  # (time, step) when this process began training
        self._last_line = 0.0

    # -- what the bar says ---------------------------------------------------------------------

    def status(self) -> str:
        """'loss 0.4123 · dev mrr@10 0.5120 (best 0.5200)', as far as known."""
        parts = []
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.dev is not None:
            best = f" (best {self.best:.4f})" if self.best is not None and self.best > self.dev else ""
            parts.append(f"{self.label} {self.metric} {self.dev:.4f}{best}")
        if self.evaluating:
            parts.append("evaluating dev…")
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)

    def _refresh(self, advance: int = 0) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=advance, status=self.status())

    def _dev_value(self, metrics: dict[str, Any]) -> float | None:
        if self.key is not None:
            value = metrics.get(self.key)
            return float(value) if isinstance(value, (int, float)) else None
        for key, value in metrics.items():
            if key.startswith("eval_") and key.endswith(f"_{self.metric}") and isinstance(value, (int, float)):
                return float(value)
        return None

    # -- trainer events ------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.close()
        self._total = state.max_steps or None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=console, transient=False, disable=quiet() or not console.is_terminal)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self._total, completed=state.global_step,
                                             status=self.status())
        self._started = (self._clock(), state.global_step)
        self._last_line = self._clock()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs and isinstance(logs.get("loss"), (int, float)):
            self.loss = float(logs["loss"])
            self._refresh()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.evaluating = bool(control.should_evaluate)
        self._refresh(advance=1)
        if self._progress is not None and self._progress.disable and not quiet():
            now = self._clock()
            if now - self._last_line >= self.every_s:
                self._last_line = now
                info(self.eta_line(state.global_step, now))

    def eta_line(self, step: int, now: float) -> str:
        """'train step 40/124: 2m10s elapsed, about 4m33s left · loss 0.41', from this process's own pace."""
        start, first = self._started or (now, step)
        elapsed = now - start
        done = step - first
        total = f"/{self._total}" if self._total else ""
        line = f"{self.description} step {step}{total}: {_clock_text(elapsed)} elapsed"
        if self._total and done > 0:
            line += f", about {_clock_text(elapsed / done * (self._total - step))} left"
        status = self.status()
        return f"{line} · {status}" if status else line

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if control.should_evaluate and not self.evaluating:  # an epoch-end evaluation was just asked for
            self.evaluating = True
            self._refresh()

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kw: Any) -> None:
        self.evaluating = False
        value = self._dev_value(metrics or {})
        if value is not None:
            self.dev = value
            self.best = value if self.best is None else max(self.best, value)
        self._refresh()
        if self._progress is not None and self._progress.disable and value is not None:
            total = f"/{self._total}" if self._total else ""
            info(f"{self.description} step {state.global_step}{total}: {self.status()}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.max_steps and state.global_step < state.max_steps:
            self.note = "stopped early"
        self.close()

    def close(self) -> None:
        """Stop the bar, leaving its last line on the terminal (also after an exception)."""
        if self._progress is not None:
            self.evaluating = False
            self._refresh()
            self._progress.stop()
        self._progress = None
        self._task = None


def _clock_text(seconds: float) -> str:
    """65.2 -> '1m05s'; 3725 -> '1h02m'."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


STOPPED_FILE = "stopped.json"  # in the checkpoints dir of a run an EvalReportCallback stopped


class RunStopped(Exception):
    """A training stopped from outside (a sweep pruned it) after the dev evaluation at `step`."""

    def __init__(self, step: int, value: float | None) -> None:
        self.step = step
        self.value = value
        super().__init__(f"stopped after the evaluation at step {step}"
                         + (f" ({value:.4f})" if value is not None else ""))


def metric_history(entries: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric over a JSON step log's evaluations, oldest first."""
    return [(int(e["step"]), float(e[key])) for e in entries if e.get("kind") == "eval" and key in e]


def best_metric_key(entries: list[dict[str, Any]], metric: str) -> str | None:
    """The metric that picked the best checkpoint: the mean over eval sets if logged, else the dev split's."""
    keys = {k for e in entries if e.get("kind") == "eval" for k in e if k.endswith(f"_{metric}")}
    for prefix in ("eval_mean_", "eval_dev_"):
        found = sorted(k for k in keys if k.startswith(prefix))
        if found:
            return found[0]
    return None


class NonFiniteTraining(PipeError):
    """The loss or the weights became NaN or infinite: the run fails, keeps nothing and names what to change."""

    def __init__(self, what: str, config: Any) -> None:
        fix = f"lower --lr (it is {config.lr:g})"
        if config.precision == "fp16":
            fix += ", or train with --precision bf16 or f32"
        super().__init__(f"{what} — {fix}")


def non_finite(value: float | None) -> str | None:
    """'NaN' or 'inf' for a value that is not finite, else None."""
    if value is None or math.isfinite(value):
        return None
    return "NaN" if math.isnan(value) else "inf"


class FiniteLossCallback(TrainerCallback):
    """Stop the run at the first logged training loss that is NaN or infinite (NonFiniteTraining)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        bad = non_finite((logs or {}).get("loss"))
        if bad:
            raise NonFiniteTraining(f"the loss became {bad} at step {state.global_step}", self.config)


class EvalReportCallback(TrainerCallback):
    """Hand every dev evaluation (the metric that picks the best checkpoint) to `report(step, value)`;
    when it answers True the run stops with RunStopped.

    A stopped run leaves `stopped.json` (the values reported so far) in its checkpoints directory
    and drops its checkpoints. Run again with the same inputs, it reports those values first, before
    any training step, so a judge that stops it again costs no training at all (a repeated sweep);
    one that lets it go on trains it from the start.
    """

    def __init__(self, report: Callable[[int, float], bool]) -> None:
        self.report = report
        self.history: list[tuple[int, float]] = []
        self.replayed = False  # stopped again from the recorded values, before any training step

    @staticmethod
    def _key(args: Any) -> str:
        key = args.metric_for_best_model or "loss"
        return key if key.startswith("eval_") else f"eval_{key}"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        marker = Path(args.output_dir) / STOPPED_FILE
        if not marker.is_file():
            return
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        for step, value in recorded.get("history", []):
            self.history.append((int(step), float(value)))
            if self.report(int(step), float(value)):
                self.replayed = True
                raise RunStopped(int(step), float(value))
        marker.unlink()  # the judge lets it go on this time: train normally

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kw: Any) -> None:
        value = (metrics or {}).get(self._key(args))
        if not isinstance(value, (int, float)):
            return
        step = int(state.global_step)
        self.history.append((step, float(value)))
        if self.report(step, float(value)):
            out = Path(args.output_dir)
            for checkpoint in out.glob("checkpoint-*"):
                shutil.rmtree(checkpoint, ignore_errors=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / STOPPED_FILE).write_text(json.dumps({"stopped_at": step, "history": self.history}) + "\n",
                                            encoding="utf-8")
            raise RunStopped(step, float(value))


__all__ = [
    "STEP_LOG",
    "STOPPED_FILE",
    "EvalReportCallback",
    "FiniteLossCallback",
    "NonFiniteTraining",
    "RunStopped",
    "best_metric_key",
    "metric_history",
    "EpochEndCallback",
    "JsonLogCallback",
    "ProgressCallback",
    "read_log",
    "summarize_log",
    "truncate_log",
]
