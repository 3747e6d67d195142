"""The iterate stage: mine → train → evaluate in rounds, re-mining with the model just trained.

Every round's mine, train and eval are ordinary artifacts, so a killed run continues where it
stopped (finished stages are cache hits). A round that does not raise the dev metric by
`min_delta` stops the loop, and the best round's model — never a worse one — is the result.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipe_embed.pipeline.core.config import option, versioned_dict
from pipe_embed.pipeline.core.console import info
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.models import DEFAULT_MODEL, MODEL_DIR, model_fingerprint
from pipe_embed.pipeline.core.store import Artifact, RunOutcome, StageResult, Store

STAGE = "iterate"
FORMAT_VERSION = 1
ROUNDS_FILE = "rounds.json"


@dataclass
class IterateConfig:
    """How rounds are chained and when they stop."""

    rounds: int = option(3, "Maximum number of mine → train → eval rounds.")
    first: Literal["faiss", "bm25", "hybrid"] = option("faiss", "Miner of round 1 (later rounds mine densely with the last model).")
    model: str = option(DEFAULT_MODEL, "Base model: path or id; the bundled all-MiniLM-L6-v2 by default.")
    continue_training: bool = option(False, "Start round r from round r-1's weights instead of the base model.",
                                     flag="--continue/--from-base")
    negatives: Literal["replace", "union"] = option("replace", "Keep only the new round's negatives, or merge them with the previous round's.")
    metric: str = option("mrr@10", "Dev metric that decides early stopping and the best round.")
    min_delta: float = option(0.0, "A round must beat the best dev metric by more than this to continue.")
    keep_base: bool = option(True, "The base model is a candidate: round 1 must beat its dev score, and when no round "
                                   "does, the result is the base model (--no-keep-base: the best round, even below it).")

    def validate(self) -> None:
        if self.rounds < 1:
            raise ConfigError("field 'rounds': must be at least 1")
        if self.min_delta < 0:
            raise ConfigError("field 'min_delta': must be >= 0")


@dataclass
class RoundResult:
    """One round's artifacts and metrics."""

    round: int
    miner: str
    mine: str
    train: str
    eval_dev: str
    eval_test: str | None
    dev: dict[str, float]
    test: dict[str, float]
    model_path: str
    improved: bool
    overlap_with_previous: float | None = None
    short_of_negatives: float | None = None


def _compose_of(store: Store, ref: str) -> Artifact:
    artifact = store.resolve(ref)
    compose = store.upstream(artifact, "compose")
    if compose is None:
        raise PipeError(f"{artifact.ref} does not come from a compose artifact",
                        hint="iterate starts from compose@… (or a mine artifact made from one)")
    return compose


def _metric(metrics: dict[str, Any], name: str) -> float:
    if name not in metrics:
        raise ConfigError(f"field 'metric': '{name}' is not measured (have: {', '.join(sorted(metrics))})")
    return float(metrics[name])


def _forward(evaluation: Artifact) -> dict[str, float]:
    """The evaluated model's term -> definition metrics from an eval artifact."""
    return dict(evaluation.metrics["model"]["forward"])


def iterate_rounds(store: Store, compose: Artifact, config: IterateConfig, mine_config: Any,
                   train_config: Any, eval_config: Any) -> tuple[list[RoundResult], dict[str, Any]]:
    """Run (or find cached) every round; returns the rounds and the base model's dev and test metrics."""
    from pipe_embed.mining.stage import run_mine
    from pipe_embed.training.evaluate import run_eval
    from pipe_embed.training.train import run_train

    base_model = config.model  # kept as given, so round 1 matches a plain `pipe mine`/`pipe train` (cache hits)
    dev_cfg = dataclasses.replace(eval_config, split="dev")
    test_cfg = dataclasses.replace(eval_config, split="test")
    splits = getattr(compose, "stats", {}).get("splits", {})
    if splits.get("dev", 1) == 0:
        raise PipeError(f"{compose.ref} has no dev split: iterate picks rounds and stops on dev",
                        hint="compose with --dev-fraction above 0 (e.g. 0.1)")
    has_test = splits.get("test", 1) > 0  # a compose with --test-fraction 0 has nothing to test on

    def evaluate_test(model: str) -> Artifact | None:
        return run_eval(store, test_cfg, model, compose.ref).artifact if has_test else None

    base_dev = _forward(run_eval(store, dev_cfg, base_model, compose.ref).artifact)
    base_test_eval = evaluate_test(base_model)
    base_test = _forward(base_test_eval) if base_test_eval is not None else {}
    info(f"base model dev {config.metric} = {_metric(base_dev, config.metric):.4f}")
    rounds: list[RoundResult] = []
    best = _metric(base_dev, config.metric) if config.keep_base else float("-inf")
    previous_mine: Artifact | None = None
    previous_model = base_model
    for number in range(1, config.rounds + 1):
        with _round_run(store, train_config, number) as tracked:  # issue 11 part B: a tracker run per round
            miner = config.first if number == 1 else "faiss"
            mcfg = dataclasses.replace(mine_config, method=miner, model=previous_model if number > 1 else base_model)
            if previous_mine is not None and config.negatives == "union":
                mcfg = dataclasses.replace(mcfg, merge_previous=True)
            source = previous_mine if previous_mine is not None else compose
            by = f", round {number - 1} model" if number > 1 else ""
            info(f"[bold]round {number}[/bold]: mine ({miner}{by})")
            mine = run_mine(store, mcfg, source).artifact
            tracked.set_tags(miner=miner, mine=mine.ref)
            start_from = previous_model if (config.continue_training and number > 1) else base_model
            tracked.set_tags(start_model=start_from)
            tcfg = dataclasses.replace(train_config, model=start_from)
            origin = f"round {number - 1}" if start_from != base_model else "the base model"
            info(f"[bold]round {number}[/bold]: train from {origin}")
            train = run_train(store, tcfg, mine).artifact
            trained = train.ref  # a ref, not a path: later rounds' versions must not depend on --data-dir
            dev = run_eval(store, dev_cfg, trained, compose.ref).artifact
            test = evaluate_test(trained)
            test_metrics = _forward(test) if test is not None else {}
            score = _metric(_forward(dev), config.metric)
            improved = score > best + config.min_delta
            eval_test = test.ref if test is not None else None
            tracked.set_tags(train=train.ref, eval_dev=dev.ref, eval_test=eval_test, improved=improved)
            tracked.log_metrics({"dev": _forward(dev), "test": test_metrics}, step=number)
            rounds.append(RoundResult(
                round=number, miner=miner, mine=mine.ref, train=train.ref, eval_dev=dev.ref,
                eval_test=eval_test, dev=_forward(dev), test=test_metrics,
                model_path=str(train.file(MODEL_DIR).resolve()),
                improved=improved,
                overlap_with_previous=mine.stats.get("overlap_with_previous"),
                short_of_negatives=mine.stats.get("share_short_of_negatives"),
            ))
            info(f"round {number}: dev {config.metric} = {score:.4f}"
                 + ("" if improved else " (no improvement: stopping)"))
            if not improved:
                break
            best = score
            previous_mine, previous_model = mine, trained
    return rounds, {"dev": base_dev, "test": base_test}


def _round_run(store: Store | None, train_config: Any, number: int) -> Any:
    """Round `number` as a tracker run (nested under the iterate run) when the train config reports to one."""
    from pipe_embed.training.tracking import group_run

    return group_run(getattr(train_config, "report_to", ()), getattr(store, "root", None), "round",
                     f"round {number}", experiment=getattr(train_config, "experiment", "pipe"), tags={"round": number})


def best_round(rounds: list[RoundResult], metric: str) -> RoundResult:
    """The round with the highest dev metric (the earliest on ties)."""
    return max(rounds, key=lambda r: (r.dev.get(metric, float("-inf")), -r.round))


@dataclass
class Result:
    """What iterate hands back: the best round, or the base model when no round beat it on dev."""

    round: int  # 0 = the base model
    model_path: str
    train: str | None
    dev: dict[str, float]
    test: dict[str, float]


def pick_result(rounds: list[RoundResult], base: dict[str, Any], config: IterateConfig) -> Result:
    """The result, saying loudly when no round beat the base model on dev."""
    from pipe_embed.pipeline.core.console import warn
    from pipe_embed.pipeline.core.models import resolve_model

    best = best_round(rounds, config.metric)
    base_score = _metric(base["dev"], config.metric)
    best_score = best.dev.get(config.metric, float("-inf"))
    if config.keep_base and best_score <= base_score + config.min_delta:
        warn(f"no round beat the base model on dev ({config.metric}: best round {best.round} {best_score:.4f}, "
             f"base {base_score:.4f}): the result is the base model, unchanged — train longer (--epochs, "
             "--max-steps), on more data, or use --no-keep-base to take the best round anyway")
        return Result(round=0, model_path=resolve_model(config.model), train=None, dev=base["dev"], test=base["test"])
    if best_score < base_score:
        warn(f"[bold red]the result (round {best.round}, dev {config.metric} {best_score:.4f}) scores below the "
             f"base model ({base_score:.4f}) on dev[/bold red] — --no-keep-base chose it; drop that flag to keep the base")
    return Result(round=best.round, model_path=best.model_path, train=best.train, dev=best.dev, test=best.test)


def run_iterate(store: Store, config: IterateConfig, mine_config: Any, train_config: Any,
                eval_config: Any, from_ref: str = "compose@latest", force: bool = False) -> RunOutcome:
    """Run the rounds as one iterate artifact; an identical call again is a cache hit."""
    compose = _compose_of(store, from_ref)
    fingerprint_extra = {"base_model": model_fingerprint(config.model), "mine": versioned_dict(mine_config),
                         "train": versioned_dict(train_config), "eval": versioned_dict(eval_config)}

    def build(work: Path) -> StageResult:
        from pipe_embed.training.tracking import group_run

        with group_run(train_config.report_to, store.root, "iterate", f"iterate {compose.ref}",
                       experiment=train_config.experiment, tags={"compose": compose.ref}) as tracked:
            rounds, base = iterate_rounds(store, compose, config, mine_config, train_config, eval_config)
            best = pick_result(rounds, base, config)
            tracked.set_tags(best_round=best.round, best_train=best.train)
            tracked.log_metrics({"base_dev": base["dev"], "best_dev": best.dev, "best_test": best.test})
        base_dev = base["dev"]
        payload = {"metric": config.metric, "base_dev": base_dev, "base_test": base["test"],
                   "best_round": best.round, "best_is_base": best.round == 0,
                   "best_model": best.model_path, "best_train": best.train,
                   "stopped_early": len(rounds) < config.rounds,
                   "rounds": [dataclasses.asdict(r) for r in rounds]}
        (work / ROUNDS_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        metrics = {f"dev_{config.metric}": best.dev.get(config.metric),
                   f"test_{config.metric}": best.test.get(config.metric),
                   f"base_dev_{config.metric}": base_dev.get(config.metric),
                   f"base_test_{config.metric}": base["test"].get(config.metric)}
        return StageResult(
            stats={"rounds_run": len(rounds), "best_round": best.round,
                   "stopped_early": payload["stopped_early"]},
            metrics=metrics,
            headline={"rounds": len(rounds), "best": best.round or "base",
                      config.metric: round(best.dev.get(config.metric, 0.0), 4)},
            extra={"best_model": best.model_path, "best_train": best.train},
        )

    return store.run(stage=STAGE, format_version=FORMAT_VERSION, config=config,
                     inputs=[compose], extra=fingerprint_extra, force=force, build=build)


def read_rounds(artifact: Artifact) -> dict[str, Any]:
    """The rounds file of an iterate artifact."""
    return json.loads(artifact.file(ROUNDS_FILE).read_text())
