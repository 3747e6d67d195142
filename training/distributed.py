"""Data-parallel `pipe train` under `torchrun --nproc_per_node N` (or `accelerate launch`): rank 0 runs the stage.

Every rank runs the command up to the store. Rank 0 alone takes the store's lock, works in the
stage's resumable work directory and, after training, evaluates, saves the model and commits the
artifact, exactly as a single process would. Ranks > 0 train in step with it through
sentence-transformers' trainer (DDP: each rank its own batches, gradients averaged; in-training dev
evaluations are run by rank 0 with the other ranks encoding their share), writing their logs to a
scratch directory and their RNG state into rank 0's `checkpoints/` (one set of checkpoints, so a
killed run resumes on every rank from the same step); then they wait for rank 0's artifact and
report it too. Without torchrun's environment (WORLD_SIZE unset or 1) this is `store.run` itself.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipe_embed.pipeline.core.console import debug, set_verbosity
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.store import RunOutcome, StageResult, Store

CACHED, FAILED = "\x00cached", "\x00failed"  # rank 0's first message when there is nothing to train
TIMEOUT = timedelta(hours=2)  # how long a rank waits for the others (rank 0's evaluation and saving included)


@dataclass(frozen=True)
class Rank:
    """This process's place in the launch (torchrun's RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def current() -> Rank:
    """The rank torchrun / accelerate launch set in the environment (a single process without them)."""
    def number(name: str, default: int) -> int:
        try:
            return int(os.environ.get(name, default))
        except ValueError:
            return default

    return Rank(number("RANK", 0), number("WORLD_SIZE", 1), number("LOCAL_RANK", 0))


def launched() -> bool:
    """Whether this process is one of several launched together."""
    return current().world > 1


@dataclass
class TrainJob:
    """What the ranks > 0 train on: the resolved config, the rows, the dev task and the eval sets."""

    config: Any
    rows: Any
    dev: Any
    eval_sets: Sequence[Any] = ()


def init_group(device: str) -> bool:
    """Join the launch's process group (NCCL on CUDA, else gloo); True when this call created it."""
    import torch
    import torch.distributed as dist

    me = current()
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.set_device(me.local)  # `cuda` is then this rank's GPU
    if dist.is_initialized():
        return False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    debug(f"rank {me.rank}/{me.world}: process group up ({backend})")
    return True


def _send(message: str | None) -> str | None:
    """Rank 0's message to every rank (what the others receive)."""
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_stage(store: Store, job: TrainJob, *, build: Callable[[Path], StageResult], **kwargs: Any) -> RunOutcome:
    """`store.run(build=build, **kwargs)` on one process; under torchrun, rank 0 runs it and the others follow."""
    me = current()
    if me.world <= 1:
        return store.run(build=build, **kwargs)
    from pipe_embed.pipeline.core.models import pick_device

    created = init_group(pick_device(job.config.device))
    try:
        if me.main:
            return _lead(store, build, kwargs)
        set_verbosity(-1)  # rank 0 speaks for the run
        return _follow(store, job)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _lead(store: Store, build: Callable[[Path], StageResult], kwargs: dict[str, Any]) -> RunOutcome:
    """Rank 0: the ordinary stage run; tells the others where to train, then which artifact came out."""
    told = False

    @functools.wraps(build)  # the same module, so the same code version as a single-process run
    def lead_build(work: Path) -> StageResult:
        nonlocal told
        _send(str(work))
        told = True
        return build(work)

    try:
        outcome = store.run(build=lead_build, **kwargs)
    except BaseException:
        if not told:  # failed before training: release the others (after it, torchrun stops them)
            _send(FAILED)
        raise
    if not told:
        _send(CACHED)
    _send(outcome.artifact.ref)
    return outcome


def _follow(store: Store, job: TrainJob) -> RunOutcome:
    """Ranks > 0: train in step with rank 0 (unless it found the artifact), then take its artifact."""
    work = _send(None)
    if work == FAILED:
        raise PipeError(f"rank {current().rank}: rank 0 stopped before training (its error says why)")
    if work != CACHED:
        follow_training(job, Path(str(work)))
    ref = _send(None)
    return RunOutcome(store.resolve(str(ref)), cached=work == CACHED)


def follow_training(job: TrainJob, shared_work: Path) -> None:
    """The training steps of `train_in_dir` on a rank > 0: no base-model score, no saving, no report.

    Checkpoints go to rank 0's directory (the trainer saves the model there from rank 0 only, and each
    rank's RNG state); logs to a scratch directory removed afterwards. The best checkpoint is loaded
    by rank 0 alone: this rank's weights are dropped when training ends.
    """
    import transformers
    from pipe_embed.pipeline.core.models import quiet_libraries
    from pipe_embed.training import train as stage

    config = dataclasses.replace(job.config, eval_base=False)
    device = stage.start_device(config)
    scratch = Path(tempfile.mkdtemp(prefix=f"pipe-train-rank{current().rank}-"))
    try:
        checkpoints = shared_work / stage.CHECKPOINTS
        resume = stage.last_checkpoint(checkpoints)
        run = stage.RunDir(scratch, scratch / stage.LOG_DIR, checkpoints, resume,
                           int(resume.name.split("-")[-1]) if resume else 0)
        run.logs.mkdir(parents=True, exist_ok=True)
        with quiet_libraries(False):
            transformers.set_seed(config.seed)
            ready = stage.load_trainable_model(config, device, job.dev, run)
            trainer = stage.build_trainer(config, ready.model, job.rows, job.dev, run, device, (), job.eval_sets)
            trainer._load_best_model = lambda: None  # rank 0 loads and keeps the best checkpoint
            stage.fit(trainer, run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
