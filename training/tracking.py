"""Experiment tracking: one MLflow / wandb run per training, nested under the iterate or sweep run.

The per-step logging is the trainer's own (`report_to` of the training arguments: transformers'
MLflowCallback and WandbCallback). This module only opens the run those callbacks log into, so
that it lands in a local store by default, carries pipe's config and lineage (iterate round, mine
and train refs, sweep trial), and, once the artifact is written, records where its model is.
TensorBoard needs no run: its event files go into the artifact's `logs/tensorboard`.

Where runs go. MLflow: `MLFLOW_TRACKING_URI` when set, else a SQLite store in the data directory
(`<data-dir>/.mlflow/mlflow.db`, run files under `<data-dir>/.mlflow/artifacts`; view them with
`mlflow ui --backend-store-uri sqlite:///<data-dir>/.mlflow/mlflow.db`). wandb: `WANDB_MODE` when
set, else online with an account (`WANDB_API_KEY`) and offline without one, into
`<data-dir>/.wandb` (or `WANDB_DIR`); `wandb sync` uploads offline runs later.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.console import debug, info
from pipe_embed.pipeline.core.errors import ConfigError

TRACKERS = ("tensorboard", "mlflow", "wandb")
RUN_TRACKERS = ("mlflow", "wandb")  # the ones that need a run opened for them
INSTALL = {
    "mlflow": "pip install 'pipe-embed[mlflow]'  (or: pip install mlflow)",
    "wandb": "pip install 'pipe-embed[wandb]'  (or: pip install wandb)",
    "tensorboard": "pip install tensorboard",
}
MLFLOW_DIR = ".mlflow"
WANDB_DIR = ".wandb"
RUN_IDS_FILE = "tracking.json"  # in a training's logs/: the runs to continue when it resumes
_OUR_URIS: set[str] = set()  # tracking URIs this process set itself (any other one is the user's)
_SAID: set[str] = set()


# -- which trackers ----------------------------------------------------------------------------------

def normalize_report_to(values: Sequence[str] | str | None) -> list[str]:
    """The trackers asked for, lower-cased, without duplicates; `none` (alone) means none at all."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    names = [n.strip().lower() for item in items for n in str(item).split(",") if n.strip()]
    unknown = [n for n in names if n not in (*TRACKERS, "none")]
    if unknown:
        raise ConfigError(f"field 'report_to': {unknown[0]!r} is not one of {', '.join(TRACKERS)}, none")
    if "none" in names:
        if len(set(names)) > 1:
            raise ConfigError("field 'report_to': 'none' cannot be combined with a tracker",
                              hint="give none alone, or a list such as tensorboard,mlflow")
        return []
    return list(dict.fromkeys(names))


def check_installed(report_to: Sequence[str]) -> None:
    """Refuse a tracker whose package is missing, with the line that installs it."""
    import importlib.util

    for name in normalize_report_to(report_to):
        module = "tensorboard" if name == "tensorboard" else name
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"field 'report_to': {name} is not installed", hint=f"run: {INSTALL[name]}")


def trainer_report_to(report_to: Sequence[str]) -> list[str]:
    """The trainer integrations to enable: mlflow/wandb only into a run that is open (pipe's or the user's).

    A training started outside `run_train` (no run opened) never makes the integrations create runs
    in a default location of their own, such as ./mlruns in the working directory.
    """
    wanted = normalize_report_to(report_to)
    active = []
    if "mlflow" in wanted:
        import mlflow

        if mlflow.active_run() is not None:
            active.append("mlflow")
        else:
            _say_once("mlflow: no run is open (train through run_train/pipe train): not reporting to MLflow")
    if "wandb" in wanted:
        import wandb

        if wandb.run is not None:
            active.append("wandb")
        else:
            _say_once("wandb: no run is open (train through run_train/pipe train): not reporting to wandb")
    return active


def _say_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        debug(message)


# -- names and values as the trackers accept them ----------------------------------------------------

def metric_name(name: str) -> str:
    """A metric or tag key MLflow accepts (`dev/mrr@10` -> `dev/mrr_10`)."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", name)


def flat_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics ({"dev": {"mrr@10": 0.4}}) as flat numeric ones ({"dev/mrr@10": 0.4})."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def param_values(params: Mapping[str, Any], limit: int = 500) -> dict[str, str]:
    """Config values as MLflow params (strings, long ones cut), keys prefixed `pipe.`."""
    out = {}
    for key, value in params.items():
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        out[f"pipe.{key}"] = text if len(text) <= limit else text[: limit - 1] + "…"
    return out


# -- lineage: the iterate / sweep runs a training runs inside ---------------------------------------

@dataclass
class Group:
    """An outer run (iterate, one round, a sweep): its tags are the lineage of the trainings inside it."""

    kind: str
    name: str
    tags: dict[str, Any]
    wandb_group: str
    mlflow_run_id: str | None = None
    metrics: list[tuple[dict[str, float], int | None]] = field(default_factory=list)

    def set_tags(self, **tags: Any) -> None:
        """Add lineage (refs, round numbers); trainings started from now on carry it too."""
        clean = {k: v for k, v in tags.items() if v is not None}
        self.tags.update(clean)
        if self.mlflow_run_id is not None:
            import mlflow

            client = mlflow.MlflowClient()
            for key, value in clean.items():
                client.set_tag(self.mlflow_run_id, f"pipe.{key}", str(value))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric metrics of this outer run (a round's dev/test scores, a trial's value)."""
        flat = flat_metrics(metrics)
        if not flat:
            return
        self.metrics.append((flat, step))
        if self.mlflow_run_id is not None:
            import mlflow

            client = mlflow.MlflowClient()
            stamp = int(time.time() * 1000)
            for key, value in flat.items():
                client.log_metric(self.mlflow_run_id, metric_name(key), value, timestamp=stamp, step=step or 0)


_LINEAGE: ContextVar[tuple[Group, ...]] = ContextVar("pipe_tracking_lineage", default=())


def lineage() -> dict[str, Any]:
    """The tags of every outer run open around this point, outermost first (`round`, `mine`, `trial`…)."""
    merged: dict[str, Any] = {}
    for group in _LINEAGE.get():
        merged[f"{group.kind}_run"] = group.name
        merged.update(group.tags)
    return merged


def _wandb_group() -> str | None:
    groups = _LINEAGE.get()
    return groups[0].wandb_group if groups else None


@contextmanager
def group_run(report_to: Sequence[str], root: Path | None, kind: str, name: str, *,
              experiment: str = "pipe", tags: Mapping[str, Any] | None = None) -> Iterator[Group]:
    """An outer run around several trainings: a (nested) MLflow run, a wandb group.

    With MLflow the trainings started inside become child runs of it. wandb has no nesting: the
    trainings share a `group`, and this run is written when the block ends, as one more run of
    that group holding the tags and metrics given to it. With neither tracker it only collects.
    """
    wanted = [t for t in normalize_report_to(report_to) if t in RUN_TRACKERS]
    outer = _LINEAGE.get()
    group = Group(kind, name, {k: v for k, v in (tags or {}).items() if v is not None},
                  outer[0].wandb_group if outer else f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    mlflow = None
    if "mlflow" in wanted:
        if root is None:
            raise ConfigError("field 'report_to': mlflow needs a data directory to keep its runs in")
        mlflow = _mlflow(root, experiment)
        run = mlflow.start_run(run_name=name, nested=mlflow.active_run() is not None,
                               tags={"pipe.kind": kind, **{f"pipe.{k}": str(v) for k, v in
                                                            {**lineage(), **group.tags}.items()}})
        group.mlflow_run_id = run.info.run_id
    token = _LINEAGE.set((*outer, group))
    status = "FINISHED"
    try:
        yield group
    except BaseException as exc:
        status = _status_of(exc)
        raise
    finally:
        _LINEAGE.reset(token)
        if mlflow is not None:
            _end_mlflow_run(mlflow, group.mlflow_run_id, status)
        if "wandb" in wanted and root is not None:
            _write_wandb_group_run(group, root, experiment, lineage(), status)


def _status_of(exc: BaseException) -> str:
    from pipe_embed.training.callbacks import RunStopped

    return "KILLED" if isinstance(exc, (KeyboardInterrupt, RunStopped)) else "FAILED"


# -- MLflow ------------------------------------------------------------------------------------------

def mlflow_location(root: Path) -> tuple[str, str]:
    """(tracking URI, artifact root) of the local store under a data directory."""
    folder = (Path(root) / MLFLOW_DIR).resolve()
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def _mlflow(root: Path, experiment: str) -> Any:
    """mlflow, pointed at the user's tracking URI or the data directory's store, on `experiment`."""
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    artifact_root = None
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not user_uri and not (mlflow.is_tracking_uri_set() and mlflow.get_tracking_uri() not in _OUR_URIS):
        uri, artifact_root = mlflow_location(root)
        (Path(root) / MLFLOW_DIR).mkdir(parents=True, exist_ok=True)
        if uri not in _OUR_URIS:
            _OUR_URIS.add(uri)
            info(f"mlflow: logging to {uri} (set MLFLOW_TRACKING_URI to log elsewhere)")
        mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        try:
            mlflow.create_experiment(experiment, artifact_location=artifact_root)
        except Exception:  # noqa: BLE001 - another process created it meanwhile
            if mlflow.get_experiment_by_name(experiment) is None:
                raise
    mlflow.set_experiment(experiment)
    return mlflow


def _end_mlflow_run(mlflow: Any, run_id: str | None, status: str) -> None:
    """End a run (the active one, or by id), its queued metrics written first."""
    if run_id is None:
        return
    flush = getattr(mlflow, "flush_async_logging", None)
    if callable(flush):
        flush()
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status=status)
    else:
        mlflow.MlflowClient().set_terminated(run_id, status=status)


# -- wandb -------------------------------------------------------------------------------------------

def wandb_settings(root: Path) -> dict[str, Any]:
    """`mode` and `dir` for wandb.init: offline into the data directory unless told otherwise."""
    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    folder = Path(os.environ.get("WANDB_DIR") or Path(root) / WANDB_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    if mode == "offline":
        message = (f"wandb: offline (no WANDB_API_KEY), runs go to {folder}/wandb; upload them with "
                   f"`wandb sync {folder}/wandb/offline-run-*`")
        if message not in _SAID:
            _SAID.add(message)
            info(message)
    return {"mode": mode, "dir": str(folder)}


def _write_wandb_group_run(group: Group, root: Path, experiment: str, outer: Mapping[str, Any],
                           status: str) -> None:
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT") or experiment, name=group.name,
                     group=group.wandb_group, job_type=group.kind, config={**outer, **group.tags},
                     **wandb_settings(root))
    for metrics, step in group.metrics:
        run.log(metrics, step=step)
    run.finish(exit_code=0 if status == "FINISHED" else 1)


# -- the run of one training -------------------------------------------------------------------------

class Tracker:
    """The MLflow / wandb run of one training: opened when training really starts (never on a
    cache hit), continued when a killed training resumes, closed once the artifact is written."""

    def __init__(self, report_to: Sequence[str], root: Path, *, experiment: str = "pipe",
                 params: Mapping[str, Any] | None = None, data_ref: str | None = None) -> None:
        self.trackers = [t for t in normalize_report_to(report_to) if t in RUN_TRACKERS]
        check_installed(self.trackers)
        self.root = Path(root)
        self.experiment = experiment
        self.params = dict(params or {})
        self.data_ref = data_ref
        self.mlflow_run_id: str | None = None
        self.wandb_run: Any = None
        self.lineage: dict[str, Any] = {}

    @property
    def started(self) -> bool:
        return self.mlflow_run_id is not None or self.wandb_run is not None

    def start(self, work: Path, run_name: str | None = None) -> None:
        """Open the runs the trainer will log into; the ids go to `work/logs/tracking.json` for a resume."""
        if not self.trackers:
            return
        self.lineage = lineage()
        ids_file = work / "logs" / RUN_IDS_FILE
        saved = json.loads(ids_file.read_text(encoding="utf-8")) if ids_file.is_file() else {}
        name = run_name or f"train-{work.name.removeprefix('.work-')[:12]}"
        tags = {"pipe.kind": "train", **({"pipe.data": self.data_ref} if self.data_ref else {}),
                **{f"pipe.{k}": str(v) for k, v in self.lineage.items()}}
        if "mlflow" in self.trackers:
            mlflow = _mlflow(self.root, self.experiment)
            nested = mlflow.active_run() is not None
            run = None
            if saved.get("mlflow"):
                try:
                    run = mlflow.start_run(run_id=saved["mlflow"], nested=nested)
                except Exception:  # noqa: BLE001 - the run is gone (another store, a deleted database)
                    debug(f"mlflow: cannot continue run {saved['mlflow']}: starting a new one")
            if run is None:
                run = mlflow.start_run(run_name=name, nested=nested, tags=tags)
                mlflow.log_params(param_values(self.params))
            self.mlflow_run_id = run.info.run_id
        if "wandb" in self.trackers:
            import wandb

            self.wandb_run = wandb.init(
                project=os.environ.get("WANDB_PROJECT") or self.experiment, name=name, group=_wandb_group(),
                job_type="train", config={"pipe": self.params, "pipe_lineage": {**self.lineage, "data": self.data_ref}},
                id=saved.get("wandb"), resume="allow" if saved.get("wandb") else None, **wandb_settings(self.root))
        ids_file.parent.mkdir(parents=True, exist_ok=True)
        ids_file.write_text(json.dumps({"mlflow": self.mlflow_run_id,
                                        "wandb": getattr(self.wandb_run, "id", None)}) + "\n", encoding="utf-8")

    def finish(self, artifact_dir: Path, ref: str, metrics: Mapping[str, Any]) -> None:
        """Record the artifact (ref, model path), its final metrics, and close the runs."""
        model = Path(artifact_dir).resolve() / "model"
        final = flat_metrics({k: v for k, v in metrics.items() if k != "train"}, "final/")
        if self.mlflow_run_id is not None:
            import mlflow

            client = mlflow.MlflowClient()
            for tag, text in {"pipe.artifact": ref, "pipe.artifact_path": str(Path(artifact_dir).resolve()),
                              "pipe.model_path": str(model)}.items():
                client.set_tag(self.mlflow_run_id, tag, text)
            stamp = int(time.time() * 1000)
            for key, value in final.items():
                client.log_metric(self.mlflow_run_id, metric_name(key), value, timestamp=stamp)
            for name in ("metrics.json", "model/README.md"):
                path = Path(artifact_dir) / name
                if path.is_file():
                    client.log_artifact(self.mlflow_run_id, str(path))
            _end_mlflow_run(mlflow, self.mlflow_run_id, "FINISHED")
            self.mlflow_run_id = None
        if self.wandb_run is not None:
            self.wandb_run.summary.update({"pipe/artifact": ref, "pipe/model_path": str(model), **final})
            self.wandb_run.finish()
            self.wandb_run = None

    def close(self, artifact: Any, cached: bool) -> None:
        """After the stage ran: finish the runs of a training, or say that a cache hit logged nothing."""
        if self.started:
            self.finish(artifact.path, artifact.ref, artifact.metrics)
        elif cached and self.trackers:
            info(f"{artifact.ref} is up to date: nothing trained, so no new {' or '.join(self.trackers)} run "
                 "(--force retrains and logs one)")

    def fail(self, exc: BaseException) -> None:
        """Close the runs of a training that did not finish (FAILED, or KILLED when stopped or interrupted)."""
        status = _status_of(exc)
        if self.mlflow_run_id is not None:
            import mlflow

            _end_mlflow_run(mlflow, self.mlflow_run_id, status)
            self.mlflow_run_id = None
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=1)
            self.wandb_run = None


@contextmanager
def tracked_training(report_to: Sequence[str], root: Path, *, experiment: str = "pipe",
                     params: Mapping[str, Any] | None = None, data_ref: str | None = None) -> Iterator[Tracker]:
    """A Tracker whose runs are closed as failed if the block raises (a finished one closes itself)."""
    tracker = Tracker(report_to, root, experiment=experiment, params=params, data_ref=data_ref)
    try:
        yield tracker
    except BaseException as exc:
        tracker.fail(exc)
        raise


__all__ = [
    "Group",
    "TRACKERS",
    "Tracker",
    "check_installed",
    "flat_metrics",
    "group_run",
    "lineage",
    "metric_name",
    "mlflow_location",
    "normalize_report_to",
    "tracked_training",
    "trainer_report_to",
]
