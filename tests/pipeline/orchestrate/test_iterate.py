"""`pipe iterate` and `pipe report`: rounds, early stop, resume after a kill, cache hits, the report."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pipe_embed.crawlers.stage import CrawlConfig, run_crawl
from pipe_embed.mining.stage import MineConfig
from pipe_embed.pipeline.compose.stage import ComposeConfig, run_compose
from pipe_embed.pipeline.core.store import Store
from pipe_embed.pipeline.orchestrate.iterate import (
    IterateConfig,
    RoundResult,
    best_round,
    iterate_rounds,
    read_rounds,
    run_iterate,
)
from pipe_embed.pipeline.orchestrate.report import ReportConfig, run_report
from pipe_embed.training.config import EvalConfig, TrainConfig


def _chess_compose(store: Store, html: Path, rows: int = 120):
    crawl = run_crawl(store, CrawlConfig(sources=["html"], inputs=[str(html)], limit_per_source=rows)).artifact
    return run_compose(store, ComposeConfig(dev_fraction=0.25, test_fraction=0.25), from_ref=crawl.ref).artifact


def _configs(model: Path, rounds: int = 2, first: str = "faiss"):
    return (IterateConfig(rounds=rounds, model=str(model), min_delta=-1.0, first=first),  # never stop early here
            MineConfig(num_negatives=2, relative_margin=0.0, batch_size=32),
            TrainConfig(max_steps=2, batch_size=8, eval_steps=0, eval_base=False, device="cpu"),
            EvalConfig(batch_size=64, device="cpu"))


# -- early stopping and the best round, with the stages replaced by fakes -------------------------

def _fake_stages(monkeypatch: pytest.MonkeyPatch, dev_scores: list[float]):
    """Replace mine/train/eval by fakes whose dev mrr@10 follows `dev_scores` per round (base first)."""
    calls = {"mine": 0, "train": 0}
    scores = iter(dev_scores)

    def artifact(ref: str, metrics=None, stats=None):
        return SimpleNamespace(ref=ref, metrics=metrics or {}, stats=stats or {},
                               file=lambda name: Path(f"/models/{ref}/{name}"))

    def run_mine(store, config, source):
        calls["mine"] += 1
        return SimpleNamespace(artifact=artifact(f"mine@{calls['mine']}"))

    def run_train(store, config, data):
        calls["train"] += 1
        return SimpleNamespace(artifact=artifact(f"train@{calls['train']}"))

    def run_eval(store, config, model, data_ref):
        value = next(scores) if config.split == "dev" else 0.5
        return SimpleNamespace(artifact=artifact(f"eval@{model}", {"model": {"forward": {"mrr@10": value}}}))

    from pipe_embed.mining import stage as _mining_stage
    from pipe_embed.training import evaluate as _training_evaluate
    from pipe_embed.training import train as _training_train

    monkeypatch.setattr(_mining_stage, "run_mine", run_mine)
    monkeypatch.setattr(_training_train, "run_train", run_train)
    monkeypatch.setattr(_training_evaluate, "run_eval", run_eval)
    return calls


def test_stops_at_first_round_without_improvement(monkeypatch: pytest.MonkeyPatch):
    calls = _fake_stages(monkeypatch, [0.70, 0.75, 0.80, 0.79, 0.90])
    compose = SimpleNamespace(ref="compose@x")
    cfg = IterateConfig(rounds=5, min_delta=0.0, first="faiss")
    rounds, base = iterate_rounds(None, compose, cfg, MineConfig(), TrainConfig(), EvalConfig())
    base = base["dev"]
    assert [r.dev["mrr@10"] for r in rounds] == [0.75, 0.80, 0.79]
    assert [r.improved for r in rounds] == [True, True, False]
    assert calls == {"mine": 3, "train": 3}
    assert base["mrr@10"] == 0.70
    assert best_round(rounds, "mrr@10").round == 2
    assert [r.miner for r in rounds] == ["faiss", "faiss", "faiss"]


def test_an_in_batch_round_one_and_round_two_mining_with_its_model(monkeypatch: pytest.MonkeyPatch):
    mined: list = []
    calls = _fake_stages(monkeypatch, [0.70, 0.75, 0.80, 0.79])
    from pipe_embed.mining import stage as _mining_stage
    from pipe_embed.training import train as _training_train

    fake_mine, fake_train, trained_on = _mining_stage.run_mine, _training_train.run_train, []

    def recording_mine(store, config, source):
        mined.append((config.method, config.model, source.ref))
        return fake_mine(store, config, source)

    def recording_train(store, config, data):
        trained_on.append(data.ref)
        return fake_train(store, config, data)

    monkeypatch.setattr(_mining_stage, "run_mine", recording_mine)
    monkeypatch.setattr(_training_train, "run_train", recording_train)
    compose = SimpleNamespace(ref="compose@x")
    assert IterateConfig().first == "faiss"
    config = IterateConfig(rounds=4, min_delta=0.0, negatives="union", first="in-batch")
    rounds, _ = iterate_rounds(None, compose, config,
                               MineConfig(), TrainConfig(), EvalConfig())
    assert [r.miner for r in rounds] == ["in-batch", "faiss", "faiss"]
    assert rounds[0].mine == "compose@x" and trained_on[0] == "compose@x"  # round 1: the composed pairs only
    assert calls == {"mine": 2, "train": 3}
    # round 2 mines the composed pairs (nothing mined to merge with) with round 1's model; round 3 with round 2's
    assert mined[0] == ("faiss", "train@1", "compose@x") and mined[1] == ("faiss", "train@2", "mine@1")
    assert rounds[0].overlap_with_previous is None and rounds[0].start_model == rounds[1].start_model


def test_min_delta_and_first_miner(monkeypatch: pytest.MonkeyPatch):
    _fake_stages(monkeypatch, [0.70, 0.75, 0.755, 0.9])
    cfg = IterateConfig(rounds=4, min_delta=0.01, first="bm25")
    rounds, _ = iterate_rounds(None, SimpleNamespace(ref="compose@x"), cfg, MineConfig(), TrainConfig(),
                               EvalConfig())
    assert len(rounds) == 2 and rounds[1].improved is False
    assert [r.miner for r in rounds] == ["bm25", "faiss"]


def test_best_round_is_never_worse_than_round_one():
    def result(n: int, score: float) -> RoundResult:
        return RoundResult(round=n, miner="faiss", mine="m", train="t", eval_dev="e", eval_test=None,
                           dev={"mrr@10": score}, test={}, model_path=f"/m{n}", improved=True)

    rounds = [result(1, 0.8), result(2, 0.7), result(3, 0.8)]
    assert best_round(rounds, "mrr@10").round == 1  # ties go to the earlier round


def test_bad_iterate_config():
    from pipe_embed.pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="rounds"):
        IterateConfig(rounds=0).validate()


# -- the real stages with the tiny model ------------------------------------------------------------

@pytest.mark.slow
def test_two_rounds_resume_after_kill_cache_hits_and_report(store: Store, chess_html: Path,
                                                           tiny_model_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    import pipe_embed.training.train as train_mod

    compose = _chess_compose(store, chess_html)
    cfg, mine_cfg, train_cfg, eval_cfg = _configs(tiny_model_path)

    real_train_in_dir = train_mod.train_in_dir
    trained: list[str] = []

    def killed_in_round_two(*args, **kwargs):
        if len(trained) == 1:
            raise KeyboardInterrupt  # the process is killed while training round 2
        trained.append("run")
        return real_train_in_dir(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_in_dir", killed_in_round_two)
    with pytest.raises(KeyboardInterrupt):
        run_iterate(store, cfg, mine_cfg, train_cfg, eval_cfg, from_ref=compose.ref)
    assert store.versions("iterate") == []
    assert len(store.versions("train")) == 1 and len(store.versions("mine")) == 2

    counted: list[str] = []

    def counting(*args, **kwargs):
        counted.append("run")
        return real_train_in_dir(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_in_dir", counting)
    outcome = run_iterate(store, cfg, mine_cfg, train_cfg, eval_cfg, from_ref=compose.ref)
    assert not outcome.cached
    assert counted == ["run", "run"]  # round 1 was a cache hit; round 2 trained, then the refit
    data = read_rounds(outcome.artifact)
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    assert data["rounds"][0]["train"] == store.versions("train")[-1].ref
    assert data["rounds"][1]["miner"] == "faiss"
    assert Path(data["best_model"]).is_dir()
    best = max(data["rounds"], key=lambda r: (r["dev"]["mrr@10"], -r["round"]))
    assert data["best_round"] == best["round"]
    # the refit: the chosen round's negatives and start model, trained on train + dev, is the result
    refit = store.resolve(data["refit"])
    assert refit.config["with_dev"] is True and refit.config["model"] == best["start_model"]
    assert refit.inputs == [{"stage": "mine", "version": store.resolve(best["mine"]).version}]
    assert data["best_model"] == str(refit.file("model").resolve())
    assert 0 <= data["refit_test"]["mrr@10"] <= 1  # the test split scores the refit itself
    assert refit.stats["rows"] > store.resolve(best["train"]).stats["rows"]
    # round 2 mined with round 1's model, named by its ref (not a path that depends on --data-dir)
    mine2 = store.resolve(data["rounds"][1]["mine"])
    assert mine2.config["model"] == data["rounds"][0]["train"]

    again = run_iterate(store, cfg, mine_cfg, train_cfg, eval_cfg, from_ref=compose.ref)
    assert again.cached and again.artifact.version == outcome.artifact.version

    report = run_report(store, ReportConfig(), outcome.artifact.ref).artifact
    page = report.file("index.html").read_text()
    for name in ("metrics.png", "scores.png"):
        assert report.file(name).stat().st_size > 5000
        assert f'src="{name}"' in page
    assert "round 2" in page and outcome.artifact.ref in page and "<table>" in page


@pytest.mark.slow
def test_in_batch_round_one_refits_on_the_composed_pairs_and_reports(store: Store, chess_html: Path,
                                                                    tiny_model_path: Path):
    compose = _chess_compose(store, chess_html, rows=60)
    _, mine_cfg, train_cfg, eval_cfg = _configs(tiny_model_path)
    config = IterateConfig(rounds=1, model=str(tiny_model_path), keep_base=False, first="in-batch")
    outcome = run_iterate(store, config, mine_cfg, train_cfg, eval_cfg, from_ref=compose.ref)
    data = read_rounds(outcome.artifact)
    assert [r["miner"] for r in data["rounds"]] == ["in-batch"] and store.versions("mine") == []
    round_one = store.resolve(data["rounds"][0]["train"])
    assert round_one.inputs == [{"stage": "compose", "version": compose.version}]
    refit = store.resolve(data["refit"])  # the in-batch recipe again, on train + dev
    assert refit.config["with_dev"] is True and refit.inputs == round_one.inputs
    assert refit.stats["rows"] > round_one.stats["rows"]
    report = run_report(store, ReportConfig(), outcome.artifact.ref).artifact
    assert "in-batch" in report.file("index.html").read_text()


@pytest.mark.slow
def test_in_batch_then_mined_says_what_mining_bought(store: Store, chess_html: Path, tiny_model_path: Path):
    from pipe_embed.training.evaluate import MIN_QUERIES, read_per_query

    compose = _chess_compose(store, chess_html)
    cfg, mine_cfg, train_cfg, eval_cfg = _configs(tiny_model_path, rounds=2, first="in-batch")
    cfg.refit = False
    train_cfg.max_steps, train_cfg.lr = 6, 1e-3  # enough for the two rounds' models to rank dev differently
    outcome = run_iterate(store, cfg, mine_cfg, train_cfg, eval_cfg, from_ref=compose.ref)
    data = read_rounds(outcome.artifact)
    one, two = data["rounds"]
    assert (one["miner"], two["miner"]) == ("in-batch", "faiss")
    gain = data["mining_gain"]
    assert (gain["treated_round"], gain["reference_round"], gain["isolates_mining"]) == (2, 1, True)
    queries = one["dev"]["queries"]
    assert gain["queries"] == queries == len(read_per_query(store.resolve(two["eval_dev"])))
    # every dev query is shared, so the mean paired difference is the difference of the rounds' dev metrics
    assert gain["mean"] == pytest.approx(two["dev"]["mrr@10"] - one["dev"]["mrr@10"], abs=1e-9)
    assert gain["mean"] != 0 and gain["low"] < gain["high"]  # a real difference, with a real interval
    assert gain["low"] <= gain["mean"] <= gain["high"]
    sentence = gain["sentence"]
    assert sentence.startswith(f"On your {queries} dev terms, mined negatives (round 2) scored ")
    assert "MRR@10 over in-batch negatives only (round 1), 95% interval [" in sentence
    expected = ("too small" if queries < MIN_QUERIES else "helped" if gain["low"] > 0
                else "hurt" if gain["high"] < 0 else "noise")
    assert gain["verdict"] == expected
    assert {"too small": "too small to tell", "helped": "mining helped.", "hurt": "mining hurt.",
            "noise": "within noise"}[expected] in sentence

    again = run_iterate(store, cfg, mine_cfg, train_cfg, eval_cfg, from_ref=compose.ref)
    assert again.cached and read_rounds(again.artifact)["mining_gain"] == gain
    page = run_report(store, ReportConfig(), outcome.artifact.ref).artifact.file("index.html").read_text()
    assert f"<b>What mining bought:</b> {sentence}</p>" in page
    assert page.index(sentence) < page.index("<h2>Metrics per round</h2>")  # near the top


@pytest.mark.slow
def test_iterate_cli_prints_table(tmp_path: Path, chess_html: Path, tiny_model_path: Path):
    from typer.testing import CliRunner

    from pipe_embed.pipeline.cli import app

    store = Store(tmp_path / "data")
    compose = _chess_compose(store, chess_html, rows=60)
    config = tmp_path / "pipe.toml"
    config.write_text(
        "[iterate]\nmin_delta = 0.0\n"
        "[mine]\nnum_negatives = 1\nrelative_margin = 0.0\n"
        "[train]\nmax_steps = 1\nwarmup_ratio = 0.0\nbatch_size = 8\neval_steps = 0\neval_base = false\n"
        "device = 'cpu'\n")
    result = CliRunner().invoke(app, ["iterate", "--rounds", "1", "--model", str(tiny_model_path),
                                      "--from", compose.ref, "--data-dir", str(store.root),
                                      "--config", str(config), "--no-keep-base"])
    assert result.exit_code == 0, result.output
    assert "rounds" in result.stderr and "best: round 1" in result.stderr
    said = " ".join(result.stderr.split())  # however the console wrapped it
    assert "fine-tuning with mined negatives (round 1) scored" in said  # what mining bought, after the best round
    assert said.index("best: round 1") < said.index("fine-tuning with mined negatives")
    assert "no in-batch round to compare with (--first in-batch measures it). wrote iterate@" in said
    assert result.stdout.strip().splitlines()[-1].startswith("iterate@")


def _round(number: int, dev: float, improved: bool = True) -> RoundResult:
    return RoundResult(round=number, miner="faiss", mine=f"mine@{number}", train=f"train@{number}",
                       eval_dev="eval@d", eval_test=None, dev={"mrr@10": dev}, test={}, model_path=f"/m/{number}",
                       improved=improved)


def test_the_base_model_is_a_candidate_and_a_worse_round_is_said_loudly(capsys: pytest.CaptureFixture):
    from pipe_embed.pipeline.orchestrate.iterate import pick_result

    base = {"dev": {"mrr@10": 0.50}, "test": {}}
    rounds = [_round(1, 0.49, improved=False), _round(2, 0.48, improved=False)]
    kept = pick_result(rounds, base, IterateConfig(keep_base=True))  # the bundled default model
    assert kept.round == 0 and kept.train is None and kept.dev == base["dev"]
    assert "no round beat the base model" in capsys.readouterr().err
    taken = pick_result(rounds, base, IterateConfig(keep_base=False))
    assert taken.round == 1 and taken.train == "train@1"
    assert "below the" in capsys.readouterr().err
    better = pick_result([_round(1, 0.55), _round(2, 0.60)], base, IterateConfig())
    assert better.round == 2 and capsys.readouterr().err == ""


def test_no_refit_when_the_base_model_is_the_result_or_when_turned_off():
    from pipe_embed.pipeline.orchestrate.iterate import Result, refit_result

    base = Result(round=0, model_path="/base", train=None, dev={"mrr@10": 0.5}, test={})
    assert refit_result(None, None, base, [], TrainConfig(), EvalConfig()) is base
    assert IterateConfig().refit and not IterateConfig(refit=False).refit


def test_round_one_must_beat_the_base_to_go_on(monkeypatch: pytest.MonkeyPatch):
    calls = _fake_stages(monkeypatch, [0.70, 0.65, 0.90])
    compose = SimpleNamespace(ref="compose@x")
    rounds, _ = iterate_rounds(None, compose, IterateConfig(rounds=3), MineConfig(), TrainConfig(), EvalConfig())
    assert [r.dev["mrr@10"] for r in rounds] == [0.65] and not rounds[0].improved
    assert calls["train"] == 1


def test_the_dev_noise_floor_decides_rounds_and_the_result(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture):
    from pipe_embed.pipeline.orchestrate.iterate import dev_noise, pick_result

    assert dev_noise({"queries": 20}, IterateConfig()) == 0.05  # one query of 20 moves MRR by up to 0.05
    assert dev_noise({"queries": 20}, IterateConfig(min_delta=0.0)) == 0.0
    base = {"dev": {"mrr@10": 0.50, "queries": 20}, "test": {}, "noise": 0.05}
    # round 1 is 0.03 below the base: within noise, so the trained model is handed back, with a warning
    within = pick_result([_round(1, 0.47, improved=False)], base, IterateConfig())
    assert within.round == 1 and "within dev noise" in capsys.readouterr().err
    # 0.06 below: beyond noise, the base model (loudly)
    below = pick_result([_round(1, 0.44, improved=False)], base, IterateConfig())
    assert below.round == 0 and "no round beat the base model" in capsys.readouterr().err
    # round 2 beats round 1 by less than the noise: round 1 stays the result
    r1, r2 = _round(1, 0.60), _round(2, 0.63)
    r2.improved = False
    assert pick_result([r1, r2], base, IterateConfig()).round == 1


def test_rounds_stop_when_a_round_is_within_noise(monkeypatch: pytest.MonkeyPatch):
    calls = _fake_stages(monkeypatch, [0.50, 0.60, 0.63, 0.90])
    import pipe_embed.training.evaluate as ev

    fake = ev.run_eval

    def with_queries(store, config, model, data_ref):  # 20 dev queries: noise 0.05
        out = fake(store, config, model, data_ref)
        out.artifact.metrics["model"]["forward"]["queries"] = 20
        return out

    monkeypatch.setattr(ev, "run_eval", with_queries)
    rounds, base = iterate_rounds(None, SimpleNamespace(ref="compose@x"), IterateConfig(rounds=3), MineConfig(),
                                  TrainConfig(), EvalConfig())
    assert base["noise"] == 0.05
    assert [r.improved for r in rounds] == [True, False] and calls["train"] == 2
