"""The iterate stage: mine → train → evaluate in rounds, re-mining with the model just trained.

Round 1 mines with the base model by default; `--first in-batch` trains it on in-batch negatives only,
so the first negatives are mined by a model that already knows the domain and mined rounds have to
beat it on dev (docs/benchmarks.md says how each choice measured). Every round's mine,
train and eval are ordinary artifacts, so a killed run continues where it stopped (finished stages
are cache hits). A round must beat the best dev score by more than the dev split's noise
(`min_delta`; unset = one dev query's worth) to replace it and go on; a trained model below the base
model beyond that noise is never handed back silently. The chosen round's recipe is then refit on
train + dev (`--no-refit` keeps the round's own model). What mining bought is measured on the rounds'
per-query dev scores (gain.py) and said in one sentence.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipe_embed.pipeline.core.config import option, versioned_dict
from pipe_embed.pipeline.core.console import info
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.models import DEFAULT_MODEL, MODEL_DIR, model_fingerprint
from pipe_embed.pipeline.core.store import Artifact, RunOutcome, StageResult, Store, finite_json

if TYPE_CHECKING:  # the stages' configs: imported where the rounds run, not when the CLI loads
    from pipe_embed.mining.stage import MineConfig
    from pipe_embed.training.config import EvalConfig, TrainConfig

STAGE = "iterate"
FORMAT_VERSION = 2  # 2: mining_gain in rounds.json
ROUNDS_FILE = "rounds.json"
IN_BATCH = "in-batch"  # round 1 without mining: the round's `mine` is the compose artifact itself
LATER_ROUNDS = "faiss"  # the mining method of rounds 2+: dense, with the last round's model


@dataclass
class IterateConfig:
    """How rounds are chained and when they stop."""

    rounds: int = option(3, "Maximum number of mine → train → eval rounds.")
    first: str = option(
        "faiss", "Round 1: mine with the base model by a mining method (faiss, bm25, hybrid …), or train on in-batch "
                 "negatives only (in-batch); later rounds mine densely (faiss) with the last round's model.")
    model: str = option(DEFAULT_MODEL, "Base model: path or id; the bundled all-MiniLM-L6-v2 by default.")
    continue_training: bool = option(False, "Start round r from round r-1's weights instead of the base model.",
                                     flag="--continue/--from-base")
    negatives: Literal["replace", "union"] = option("replace", "Keep only the new round's negatives, or merge them with the previous round's.")
    metric: str = option("mrr@10", "Dev metric that decides early stopping and the best round.")
    min_delta: float | None = option(
        None, "A round must beat the best dev score by more than this to replace it and go on; unset = the dev "
              "split's noise floor, one query's worth (1 / dev queries).")
    keep_base: bool = option(True, "The base model is a candidate: round 1 must beat its dev score, and when no round "
                                   "does, the result is the base model (--no-keep-base: the best round, even below it).")
    refit: bool = option(True, "Once dev has chosen the best round, train that round's recipe again on train + dev "
                               "(its negatives, the same budget) and hand back that model; --no-refit keeps the round's.")

    def validate(self) -> None:
        """Check ranges and the first round's miner; raises ConfigError naming the field."""
        from pipe_embed.mining.methods import METHODS

        if self.rounds < 1:
            raise ConfigError("field 'rounds': must be at least 1")
        if self.first != IN_BATCH and self.first not in METHODS:
            known = [IN_BATCH, *METHODS.names()]
            close = difflib.get_close_matches(str(self.first), known, n=1)
            choose = f"choose {', '.join(known)}"
            raise ConfigError(f"field 'first': {self.first!r} is neither {IN_BATCH} nor a mining method",
                              hint=f"did you mean '{close[0]}'? {choose}" if close else choose)
        if self.min_delta is not None and self.min_delta < 0:
            raise ConfigError("field 'min_delta': must be >= 0")


@dataclass
class RoundResult:
    """One round's artifacts and metrics."""

    round: int
    miner: str
    mine: str  # the mine artifact the round trained on (the compose artifact for an in-batch round)
    train: str
    eval_dev: str
    eval_test: str | None
    dev: dict[str, float]
    test: dict[str, float]
    model_path: str
    improved: bool
    overlap_with_previous: float | None = None
    short_of_negatives: float | None = None
    start_model: str | None = None  # what the round trained from (a refit trains from it again)


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


def dev_noise(base_dev: dict[str, Any], config: IterateConfig) -> float:
    """The margin a round must clear: min_delta when set, else one dev query's worth of the metric."""
    from pipe_embed.training.checks import one_query_noise

    return float(config.min_delta) if config.min_delta is not None else one_query_noise(base_dev)


def iterate_rounds(store: Store, compose: Artifact, config: IterateConfig, mine_config: MineConfig,
                   train_config: TrainConfig, eval_config: EvalConfig) -> tuple[list[RoundResult], dict[str, Any]]:
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

    base_dev_eval = run_eval(store, dev_cfg, base_model, compose.ref).artifact
    base_dev = _forward(base_dev_eval)
    base_test_eval = evaluate_test(base_model)
    base_test = _forward(base_test_eval) if base_test_eval is not None else {}
    noise = dev_noise(base_dev, config)
    info(f"base model dev {config.metric} = {_metric(base_dev, config.metric):.4f}; a round must beat the best "
         f"by more than {noise:.4f} to count" + ("" if config.min_delta is not None else " (one dev query's worth)"))
    rounds: list[RoundResult] = []
    best = _metric(base_dev, config.metric) if config.keep_base else float("-inf")
    previous_mine: Artifact | None = None
    previous_model = base_model
    for number in range(1, config.rounds + 1):
        with _round_run(store, train_config, number) as tracked:  # a tracker run per round
            miner = config.first if number == 1 else LATER_ROUNDS
            if miner == IN_BATCH:
                info(f"[bold]round {number}[/bold]: in-batch negatives only (no mining)")
                mine = compose  # trains on the composed pairs: every other positive in a batch is a negative
            else:
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
            improved = score > best + noise
            eval_test = test.ref if test is not None else None
            tracked.set_tags(train=train.ref, eval_dev=dev.ref, eval_test=eval_test, improved=improved)
            tracked.log_metrics({"dev": _forward(dev), "test": test_metrics}, step=number)
            rounds.append(RoundResult(
                round=number, miner=miner, mine=mine.ref, train=train.ref, eval_dev=dev.ref,
                eval_test=eval_test, dev=_forward(dev), test=test_metrics,
                model_path=str(train.file(MODEL_DIR).resolve()),
                improved=improved, start_model=start_from,
                overlap_with_previous=getattr(mine, "stats", {}).get("overlap_with_previous"),
                short_of_negatives=getattr(mine, "stats", {}).get("share_short_of_negatives"),
            ))
            info(f"round {number}: dev {config.metric} = {score:.4f}"
                 + ("" if improved else f" (not above the best by more than {noise:.4f}: stopping)"))
            if not improved:
                break
            best = score
            previous_mine = mine if miner != IN_BATCH else None  # nothing mined to merge with
            previous_model = trained
    return rounds, {"dev": base_dev, "test": base_test, "noise": noise, "eval_dev": base_dev_eval.ref}


def _round_run(store: Store | None, train_config: TrainConfig, number: int) -> Any:
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
    refit: str | None = None  # the refit's train ref, when the model handed back is the refit


def refit_result(store: Store, compose: Artifact, chosen: Result, rounds: list[RoundResult],
                 train_config: TrainConfig, eval_config: EvalConfig) -> Result:
    """The chosen round's recipe trained again on train + dev: same negatives, start model and budget.

    Dev chose the round, so the refit cannot be scored on dev; its dev figures stay the round's, and
    the test split (when there is one) scores the refit itself.
    """
    from pipe_embed.training.evaluate import run_eval
    from pipe_embed.training.train import run_train

    if chosen.round == 0:
        return chosen  # no round beat the base model: nothing to refit
    picked = next(r for r in rounds if r.round == chosen.round)
    info(f"[bold]refit[/bold]: round {picked.round}'s recipe on train + dev")
    tcfg = dataclasses.replace(train_config, model=picked.start_model or train_config.model, with_dev=True)
    train = run_train(store, tcfg, store.resolve(picked.mine)).artifact
    test = chosen.test
    if chosen.test:
        test_cfg = dataclasses.replace(eval_config, split="test")
        test = _forward(run_eval(store, test_cfg, train.ref, compose.ref).artifact)
    return Result(round=chosen.round, model_path=str(train.file(MODEL_DIR).resolve()), train=train.ref,
                  dev=chosen.dev, test=test, refit=train.ref)


def pick_result(rounds: list[RoundResult], base: dict[str, Any], config: IterateConfig) -> Result:
    """The result: the last round that beat the best by more than the dev noise; else round 1 unless it is
    below the base model beyond noise (then the base model, said loudly); `--no-keep-base`: the best round."""
    from pipe_embed.pipeline.core.console import warn
    from pipe_embed.pipeline.core.models import resolve_model

    noise = float(base.get("noise", config.min_delta or 0.0))
    base_score = _metric(base["dev"], config.metric)
    improved = [r for r in rounds if r.improved]
    if not config.keep_base:
        best = best_round(rounds, config.metric)
    elif improved:
        best = best_round(improved, config.metric)  # with min_delta >= 0 that is the last improved round
    else:
        first = rounds[0]
        first_score = first.dev.get(config.metric, float("-inf"))
        if first_score < base_score - noise or (noise == 0 and first_score <= base_score):
            warn(f"no round beat the base model on dev ({config.metric}: round 1 {first_score:.4f}, base "
                 f"{base_score:.4f}, noise {noise:.4f}): the result is the base model, unchanged — train longer "
                 "(--epochs, --min-steps), on more data, or use --no-keep-base to take the best round anyway")
            return Result(round=0, model_path=resolve_model(config.model), train=None, dev=base["dev"],
                          test=base["test"])
        warn(f"round 1 is within dev noise of the base model ({config.metric} {first_score:.4f} vs {base_score:.4f}, "
             f"noise {noise:.4f}): handing back the trained model; the dev split is too small to tell them apart "
             "(--dev-fraction, --eval-data)")
        best = first
    best_score = best.dev.get(config.metric, float("-inf"))
    if best_score < base_score - max(noise, 0.0):
        warn(f"[bold red]the result (round {best.round}, dev {config.metric} {best_score:.4f}) scores below the "
             f"base model ({base_score:.4f}) on dev beyond noise[/bold red] — --no-keep-base chose it; drop that "
             "flag to keep the base")
    return Result(round=best.round, model_path=best.model_path, train=best.train, dev=best.dev, test=best.test)


def measure_gain(store: Store, rounds: list[RoundResult], base: dict[str, Any], config: IterateConfig) -> dict[str, Any]:
    """What mining bought on dev (gain.mining_gain), from the per-query scores of the base's and rounds' dev evals."""
    from pipe_embed.pipeline.orchestrate.gain import Scored, mining_gain
    from pipe_embed.training.evaluate import read_per_query

    def per_query_rows(eval_ref: str | None) -> dict[str, dict[str, float]] | None:
        try:
            return read_per_query(store.resolve(eval_ref)) if eval_ref else None
        except PipeError:  # an eval this store cannot find: the sentence says it was not measured
            return None

    def scored(number: int, mined: bool, eval_ref: str | None, dev: dict[str, Any]) -> Scored:
        rows = per_query_rows(eval_ref)
        per_query = {q: row[config.metric] for q, row in (rows or {}).items() if config.metric in row}
        return Scored(number, mined, float(dev.get(config.metric, float("-inf"))), per_query or None)

    return mining_gain(scored(0, False, base.get("eval_dev"), base["dev"]),
                       [scored(r.round, r.miner != IN_BATCH, r.eval_dev, r.dev) for r in rounds],
                       config.metric, config.rounds)


def mined_with(mine_config: MineConfig, config: IterateConfig) -> MineConfig:
    """The mine config with only the settings of the methods the rounds mine with (the others never
    change what iterate does, so they stay out of its version)."""
    methods = [m for m in (config.first, LATER_ROUNDS) if m != IN_BATCH]
    return mine_config.with_sections(methods)


def run_iterate(store: Store, config: IterateConfig, mine_config: MineConfig, train_config: TrainConfig,
                eval_config: EvalConfig, from_ref: str = "compose@latest", force: bool = False) -> RunOutcome:
    """Run the rounds as one iterate artifact; an identical call again is a cache hit."""
    compose = _compose_of(store, from_ref)
    fingerprint_extra = {"base_model": model_fingerprint(config.model), "mine": versioned_dict(mined_with(mine_config, config)),
                         "train": versioned_dict(train_config.resolved()), "eval": versioned_dict(eval_config)}

    def build(work: Path) -> StageResult:
        from pipe_embed.training.tracking import group_run

        with group_run(train_config.report_to, store.root, "iterate", f"iterate {compose.ref}",
                       experiment=train_config.experiment, tags={"compose": compose.ref}) as tracked:
            rounds, base = iterate_rounds(store, compose, config, mine_config, train_config, eval_config)
            best = pick_result(rounds, base, config)
            gain = measure_gain(store, rounds, base, config)
            if config.refit:
                best = refit_result(store, compose, best, rounds, train_config, eval_config)
            tracked.set_tags(best_round=best.round, best_train=best.train)
            tracked.log_metrics({"base_dev": base["dev"], "best_dev": best.dev, "best_test": best.test})
        base_dev = base["dev"]
        payload = {"metric": config.metric, "base_dev": base_dev, "base_test": base["test"],
                   "noise": base.get("noise"),
                   "best_round": best.round, "best_is_base": best.round == 0,
                   "best_model": best.model_path, "best_train": best.train, "refit": best.refit,
                   "refit_test": best.test if best.refit else None,
                   "stopped_early": len(rounds) < config.rounds, "mining_gain": gain,
                   "rounds": [dataclasses.asdict(r) for r in rounds]}
        (work / ROUNDS_FILE).write_text(finite_json(payload))  # an undefined score is null, never bare NaN
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
