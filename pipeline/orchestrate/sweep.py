"""`pipe sweep`: search learning rate, batch size, temperature and epochs with Optuna on the dev metric.

Every trial is an ordinary `pipe train` run, so a trial trained before is a cache hit. While a
trial trains, a trainer callback hands Optuna its dev metric at every evaluation and the pruner
stops a hopeless trial early; a pruned trial remembers the values it reported, so a repeated sweep
prunes it again before any training step. The sweep is itself an artifact: `trials.csv` and
`trials.json` (parameters, value, state, train ref, the metric at every evaluation), `trials.png`
(a plot of the trials) and `best.toml`, the best trial's whole train config, which `pipe train
--config best.toml` accepts (and finds as a cache hit).

A search dimension is written `LO..HI` (learning rate and temperature: log-uniform; batch size:
the powers of two between, with the ends; epochs: every integer between), `A,B,C` (these values)
or one value (fixed); empty keeps the train config's value.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipe_embed.pipeline.core.config import as_dict, option, versioned_dict
from pipe_embed.pipeline.core.console import info
from pipe_embed.pipeline.core.errors import ConfigError, PipeError, require
from pipe_embed.pipeline.core.models import model_fingerprint, resolve_model_ref
from pipe_embed.pipeline.core.store import Artifact, RunOutcome, StageResult, Store, finite_json

if TYPE_CHECKING:  # the train config: imported where the trials run, not when the CLI loads
    from pipe_embed.training.config import TrainConfig

STAGE = "sweep"
FORMAT_VERSION = 1
TRIALS_CSV = "trials.csv"
TRIALS_JSON = "trials.json"
PLOT = "trials.png"
BEST_CONFIG = "best.toml"
SEARCHED = ("lr", "batch_size", "temperature", "epochs")  # TrainConfig fields a sweep may search
NOT_IN_BEST = ("export_dir",)  # operational fields a best config should not repeat


@dataclass
class SweepConfig:
    """What `pipe sweep` searches, how many trials, and how it samples and prunes."""

    trials: int = option(20, "Number of trials.")
    lr: str = option("5e-7..1e-4", "Learning rates: LO..HI (log-uniform), A,B,C (choices) or one value; "
                                   "empty: the train config's.")
    batch_size: str = option("32..256", "Batch sizes: LO..HI (the powers of two between, and the ends), A,B,C "
                                        "or one value; empty: the train config's.")
    temperature: str = option("0.01..0.1", "Loss temperatures: LO..HI (log-uniform), A,B,C or one value; "
                                           "empty: the train config's.")
    epochs: str = option("", "Epochs: LO..HI (every integer), A,B,C or one value; empty: the train config's.")
    sampler: Literal["tpe", "random"] = option("tpe", "Optuna sampler: tpe (learns from earlier trials) or random.")
    sampler_seed: int = option(0, "Sampler seed: the same seed and the same results give the same trials.")
    pruner: Literal["median", "none"] = option(
        "median", "median: stop a trial whose dev metric falls below the median of earlier trials at the same "
                  "step; none: every trial runs to the end.")
    startup_trials: int = option(2, "Trials that run to the end before any is pruned.")
    prune_after_steps: int = option(0, "No trial is pruned before this optimizer step.")

    def validate(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"field 'trials': must be >= 1, got {self.trials}")
        for name in ("startup_trials", "prune_after_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"field '{name}': must be >= 0, got {getattr(self, name)}")
        if not any(d.kind != "fixed" for d in search_space(self)):  # every dimension parses, one is searched
            raise ConfigError("field 'lr': nothing to search: every dimension is fixed or empty",
                              hint="give a range (--lr 1e-5..1e-4) or choices (--batch-size 32,64)")


# -- the search space --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    """One searched (or fixed) train config field."""

    name: str
    kind: Literal["log", "int", "choice", "fixed"]
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value for this trial (Optuna's suggest_* call)."""
        if self.kind == "log":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        return self.choices[0]


_NUMBER_TYPES = {"lr": float, "temperature": float, "batch_size": int, "epochs": int}


def _number(name: str, text: str) -> float | int:
    kind = _NUMBER_TYPES[name]
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"field '{name}': {text!r} is not a number",
                          hint="write LO..HI, A,B,C or one value") from None
    if kind is int and not value.is_integer():
        raise ConfigError(f"field '{name}': {text!r} is not a whole number")
    if value <= 0 or not math.isfinite(value):
        raise ConfigError(f"field '{name}': {text!r} must be > 0")
    return int(value) if kind is int else value


def parse_dimension(name: str, text: str) -> Dimension | None:
    """`LO..HI`, `A,B,C` or one value for a SEARCHED field; None for empty (the train config's value)."""
    text = text.strip()
    if not text:
        return None
    if ".." in text:
        lo_text, _, hi_text = text.partition("..")
        low, high = _number(name, lo_text.strip()), _number(name, hi_text.strip())
        if low > high:
            raise ConfigError(f"field '{name}': range {text!r} runs backwards", hint=f"write {hi_text}..{lo_text}")
        if low == high:
            return Dimension(name, "fixed", choices=(low,))
        if name == "batch_size":
            powers = [2 ** k for k in range(0, 31) if low < 2 ** k < high]
            return Dimension(name, "choice", choices=tuple([int(low), *powers, int(high)]))
        if name == "epochs":
            return Dimension(name, "int", low=low, high=high)
        return Dimension(name, "log", low=low, high=high)
    values = tuple(dict.fromkeys(_number(name, part.strip()) for part in text.split(",") if part.strip()))
    if not values:
        return None
    return Dimension(name, "fixed", choices=values) if len(values) == 1 else Dimension(name, "choice", choices=values)


def search_space(config: SweepConfig) -> list[Dimension]:
    """The dimensions given (searched or fixed), in SEARCHED order."""
    return [d for name in SEARCHED if (d := parse_dimension(name, getattr(config, name))) is not None]


# -- a trial ---------------------------------------------------------------------------------------

@dataclass
class TrialRecord:
    """What one trial tried and what came of it."""

    number: int
    state: str  # COMPLETE | PRUNED
    params: dict[str, Any]
    value: float | None
    train: str | None
    cached: bool
    steps: int | None
    pruned_at_step: int | None
    history: list[tuple[int, float]]


def _sampler(optuna: Any, config: SweepConfig) -> Any:
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=config.sampler_seed)
    return optuna.samplers.TPESampler(seed=config.sampler_seed)


def _pruner(optuna: Any, config: SweepConfig) -> Any:
    if config.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=config.startup_trials,
                                       n_warmup_steps=config.prune_after_steps)


def _logged_history(artifact: Artifact, metric: str) -> list[tuple[int, float]]:
    """The metric that picked the best checkpoint at every evaluation of a finished train artifact."""
    from pipe_embed.training.callbacks import STEP_LOG, best_metric_key, metric_history, read_log

    entries = read_log(artifact.file("logs") / STEP_LOG)
    key = best_metric_key(entries, metric)
    return metric_history(entries, key) if key else []


def _objective_value(artifact: Artifact) -> float:
    value = artifact.metrics.get("train", {}).get("best_dev_metric")
    if value is None:
        raise PipeError(f"{artifact.ref}: the trial has no dev metric to compare",
                        hint="sweep on data with a dev split (pipe compose --dev-fraction), or give --eval-data")
    return float(value)


def run_trial(store: Store, trial: Any, space: list[Dimension], train_config: TrainConfig, data: Artifact,
              pruning: bool, verbose: bool = False) -> dict[str, Any]:
    """Train one trial (or find it cached); report its dev metric to Optuna; raise TrialPruned when pruned."""
    import optuna

    from pipe_embed.training.callbacks import EvalReportCallback, RunStopped
    from pipe_embed.training.tracking import group_run
    from pipe_embed.training.train import run_train

    params = {d.name: d.suggest(trial) for d in space}
    config = dataclasses.replace(train_config, **params)
    config.validate()

    def report(step: int, value: float) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a resumed trial reports a step again: Optuna keeps the first
            trial.report(value, step)
        return pruning and trial.should_prune()

    callback = EvalReportCallback(report)
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    info(f"[bold]trial {trial.number}[/bold]: {shown}")
    with group_run([], None, "trial", f"trial {trial.number}", tags={"trial": trial.number, **params}):
        try:
            outcome = run_train(store, config, data, callbacks=[callback], verbose=verbose)
        except RunStopped as stop:
            info(f"trial {trial.number}: pruned at step {stop.step}"
                 + (" (as before: nothing trained)" if callback.replayed else ""))
            trial.set_user_attr("record", dataclasses.asdict(TrialRecord(
                trial.number, "PRUNED", params, stop.value, None, callback.replayed, stop.step, stop.step,
                callback.history)))
            raise optuna.TrialPruned() from None
    artifact = outcome.artifact
    history = callback.history
    if outcome.cached:
        history = _logged_history(artifact, config.metric)
        for step, value in history:
            report(step, value)  # the pruner's statistics match a sweep that trained it
    value = _objective_value(artifact)
    info(f"trial {trial.number}: dev {config.metric} {value:.4f}{' (cached)' if outcome.cached else ''}")
    trial.set_user_attr("record", dataclasses.asdict(TrialRecord(
        trial.number, "COMPLETE", params, value, artifact.ref, outcome.cached,
        artifact.metrics.get("train", {}).get("steps"), None, history)))
    return trial.user_attrs["record"]


# -- outputs -----------------------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """A TOML literal for a config value (str, bool, int, float or a list of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def best_config_toml(config: TrainConfig, comment: list[str]) -> str:
    """A `[train]` table with every field of the config (None and export paths left out), then a
    `[train.<loss>]` table of the chosen loss's own settings."""
    lines = [f"# {line}" for line in comment] + ["[train]"]
    values = as_dict(config.resolved())
    sections = values.pop("params", None) or {}
    for key, value in values.items():
        if value is None or key in NOT_IN_BEST:
            continue
        lines.append(f"{key} = {toml_value(value)}")
    for name, settings in sections.items():
        lines += ["", f"[train.{name}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in settings.items() if value is not None]
    return "\n".join(lines) + "\n"


def write_trials(work: Path, records: list[dict[str, Any]], space: list[Dimension]) -> None:
    """trials.json (everything) and trials.csv (one row per trial)."""
    (work / TRIALS_JSON).write_text(finite_json(records), encoding="utf-8")  # an undefined value is null
    names = [d.name for d in space]
    with open(work / TRIALS_CSV, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["trial", "state", "value", *names, "steps", "pruned_at_step", "cached", "train"])
        for r in records:
            writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                             *[r["params"].get(n, "") for n in names], r["steps"] or "",
                             "" if r["pruned_at_step"] is None else r["pruned_at_step"], r["cached"], r["train"] or ""])


def plot_trials(path: Path, records: list[dict[str, Any]], metric: str) -> None:
    """Two panels: each trial's value with the best so far; the dev metric at every evaluation per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    best, best_so_far = None, []
    for r in records:
        if r["state"] == "COMPLETE" and r["value"] is not None:
            best = r["value"] if best is None else max(best, r["value"])
        best_so_far.append(best)
    done = [r for r in records if r["state"] == "COMPLETE"]
    pruned = [r for r in records if r["state"] == "PRUNED" and r["value"] is not None]
    left.scatter([r["number"] for r in done], [r["value"] for r in done], label="complete", zorder=3)
    left.scatter([r["number"] for r in pruned], [r["value"] for r in pruned], marker="x", color="grey",
                 label="pruned (last value)", zorder=3)
    left.step([r["number"] for r in records], [b if b is not None else math.nan for b in best_so_far],
              where="post", color="green", label="best so far")
    left.set(xlabel="trial", ylabel=f"dev {metric}", title="trials")
    left.legend(loc="best", fontsize=8)
    top = max(done, key=lambda r: r["value"], default=None)
    for r in records:
        if not r["history"]:
            continue
        steps, values = zip(*r["history"])
        is_best = top is not None and r["number"] == top["number"]
        right.plot(steps, values, linestyle="--" if r["state"] == "PRUNED" else "-",
                   color="green" if is_best else ("grey" if r["state"] == "PRUNED" else None),
                   linewidth=2.5 if is_best else 1, marker="o", markersize=3, label=f"trial {r['number']}")
    right.set(xlabel="optimizer step", ylabel=f"dev {metric}", title="dev metric while training")
    if len(records) <= 12:
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_trials(artifact: Artifact) -> list[dict[str, Any]]:
    """The trials of a sweep artifact."""
    return json.loads(artifact.file(TRIALS_JSON).read_text(encoding="utf-8"))


def trials_table(records: list[dict[str, Any]], metric: str, best: int | None) -> Any:
    """The rich table printed after `pipe sweep`."""
    from rich.table import Table

    names = list(dict.fromkeys(k for r in records for k in r["params"]))
    table = Table(title="trials")
    for column in ("trial", "state", f"dev {metric}", *names, "steps", "cached", "train"):
        table.add_column(column, justify="right")
    for r in records:
        cells = [f"{r['params'][n]:.3g}" if isinstance(r["params"].get(n), float) else str(r["params"].get(n, ""))
                 for n in names]
        state = r["state"].lower() + (f" @{r['pruned_at_step']}" if r["pruned_at_step"] is not None else "")
        table.add_row(str(r["number"]), state, "-" if r["value"] is None else f"{r['value']:.4f}", *cells,
                      str(r["steps"] or "-"), "yes" if r["cached"] else "no", r["train"] or "-",
                      style="bold green" if r["number"] == best else None)
    return table


# -- the stage ---------------------------------------------------------------------------------------

def _data_artifact(store: Store, train_config: TrainConfig, data: str | Artifact | None) -> Artifact:
    from pipe_embed.training.train import resolve_data

    source = resolve_data(store, train_config, data)
    if source.artifact is None:
        raise PipeError("a sweep compares trials on a dev split: give it a data artifact, not a pairs file",
                        hint="compose the file first (`pipe compose --input FILE`), then --from compose@latest")
    if source.dev is None and not train_config.eval_data:
        raise PipeError(f"{source.artifact.ref}: has no dev split to compare the trials on",
                        hint="compose with --dev-fraction > 0, or give --eval-data")
    return source.artifact


def run_sweep(store: Store, config: SweepConfig, train_config: TrainConfig, data: str | Artifact | None = None,
              force: bool = False, verbose: bool = False) -> RunOutcome:
    """Run the study (or find it cached) as a sweep artifact; every trial is a train artifact."""
    optuna = require("optuna", extra="sweep")
    from pipe_embed.training.evaldata import spec_fingerprint
    from pipe_embed.training.tracking import group_run

    config.validate()
    space = search_space(config)
    artifact = _data_artifact(store, train_config, data)
    extra: dict[str, Any] = {"base_weights": model_fingerprint(resolve_model_ref(store, train_config.model))}
    if train_config.eval_data:
        extra["eval_sets"] = [spec_fingerprint(store, v) for v in train_config.eval_data]

    def build(work: Path) -> StageResult:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=_sampler(optuna, config),
                                    pruner=_pruner(optuna, config))
        with group_run(train_config.report_to, store.root, "sweep", f"sweep {artifact.ref}",
                       experiment=train_config.experiment, tags={"data": artifact.ref}) as tracked:

            def objective(trial: Any) -> float:
                record = run_trial(store, trial, space, train_config, artifact, config.pruner != "none", verbose)
                tracked.log_metrics({"trial_value": record["value"]}, step=trial.number)
                return float(record["value"])

            study.optimize(objective, n_trials=config.trials)
            records = [t.user_attrs["record"] for t in study.trials if "record" in t.user_attrs]
            complete = [r for r in records if r["state"] == "COMPLETE"]
            if not complete:
                raise PipeError("every trial was pruned: no best config",
                                hint="raise --startup-trials or use --pruner none")
            best = max(complete, key=lambda r: (r["value"], -r["number"]))
            tracked.set_tags(best_trial=best["number"], best_train=best["train"])
            tracked.log_metrics({"best_value": best["value"]})
        write_trials(work, records, space)
        plot_trials(work / PLOT, records, train_config.metric)
        best_config = dataclasses.replace(train_config, **best["params"])
        comment = [f"best of {len(records)} trials: trial {best['number']}, dev {train_config.metric} "
                   f"{best['value']:.4f} ({best['train']})",
                   f"train it again (a cache hit): pipe train --config {BEST_CONFIG} --from {artifact.ref}"]
        (work / BEST_CONFIG).write_text(best_config_toml(best_config, comment), encoding="utf-8")
        pruned = sum(r["state"] == "PRUNED" for r in records)
        stats = {"trials": len(records), "complete": len(complete), "pruned": pruned,
                 "cached_trials": sum(bool(r["cached"]) for r in records)}
        metrics = {"best_value": best["value"], "best_trial": best["number"], "best_params": best["params"],
                   "best_train": best["train"], "metric": train_config.metric}
        headline = {"trials": len(records), "pruned": pruned, f"best_{train_config.metric}": round(best["value"], 4)}
        return StageResult(stats=stats, metrics=metrics, headline=headline,
                           extra={"best_train": best["train"], "best_config": BEST_CONFIG})

    return store.run(stage=STAGE, format_version=FORMAT_VERSION,
                     config={"sweep": versioned_dict(config), "train": versioned_dict(train_config.resolved())},
                     inputs=[artifact], extra=extra, force=force, build=build)


__all__ = [
    "BEST_CONFIG",
    "Dimension",
    "SweepConfig",
    "best_config_toml",
    "parse_dimension",
    "read_trials",
    "run_sweep",
    "search_space",
    "trials_table",
]
