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

import functools
import os
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


def run_stage(store: Store, job: TrainJob, *, build: Callable[[Path], StageResult],
              follow: Callable[[TrainJob, Path], None], **kwargs: Any) -> RunOutcome:
    """`store.run(build=build, **kwargs)` on one process; under torchrun, rank 0 runs it and the others
    follow: `follow(job, work)` trains in step on ranks > 0 (the train stage hands it in)."""
    me = current()
    if me.world <= 1:
        return store.run(build=build, **kwargs)
    from pipe_embed.pipeline.core.models import pick_device

    created = init_group(pick_device(job.config.device))
    try:
        if me.main:
            return _lead(store, build, kwargs)
        set_verbosity(-1)  # rank 0 speaks for the run
        return _follow(store, job, follow)
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


def _follow(store: Store, job: TrainJob, follow: Callable[[TrainJob, Path], None]) -> RunOutcome:
    """Ranks > 0: train in step with rank 0 (unless it found the artifact), then take its artifact."""
    work = _send(None)
    if work == FAILED:
        raise PipeError(f"rank {current().rank}: rank 0 stopped before training (its error says why)")
    if work != CACHED:
        follow(job, Path(str(work)))
    ref = _send(None)
    return RunOutcome(store.resolve(str(ref)), cached=work == CACHED)


