"""Before `pipe eval` loads any model: the split it will score must hold a query with a relevant document.

`run_eval` finds an empty split only when it scores it, after loading the model (and its base); the
same resolution of model ref, data artifact and split, done here first, fails in a moment instead.
"""

from __future__ import annotations

from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.pairs import pairs_file
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.config import EvalConfig
from pipe_embed.training.evaluate import (
    _resolve_model_ref,
    _train_data_artifact,
    data_dir_for,
    measured_queries,
    retrieval_task,
)


def check_eval_split(store: Store, config: EvalConfig, model_ref: str, data_ref: str | None) -> None:
    """Raise a one-line PipeError when the split `pipe eval` would score is missing or has no measurable query."""
    _path, train_artifact = _resolve_model_ref(store, model_ref)
    if data_ref is None:
        if train_artifact is None:
            return  # run_eval says that --data is needed
        data = _train_data_artifact(store, train_artifact)
    else:
        data = store.resolve(data_ref)
    data_dir = data_dir_for(store, data)
    split = config.split
    if split == "auto":  # as evaluate.pick_split chooses, without its messages
        test = data_dir / pairs_file("test")
        split = "test" if test.is_file() and test.stat().st_size > 0 else "dev"
    task = retrieval_task(data_dir, split)  # a missing split file is an error here already
    if measured_queries(task) == 0:
        raise PipeError(f"{data.ref}: the {split} split has no query with a relevant document in the corpus: "
                        "nothing to evaluate", hint="compose with --dev-fraction/--test-fraction above 0, "
                                                    "or score another --split")


__all__ = ["check_eval_split"]
