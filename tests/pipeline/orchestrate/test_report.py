"""`pipe report` on small runs: shares the miner left undefined, and settings no plot can use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.store import StageResult, Store
from pipe_embed.pipeline.orchestrate.report import ReportConfig, run_report


def _artifact(store: Store, stage: str, files: dict[str, str], metrics: dict[str, Any] | None = None,
              inputs: list | None = None):
    def build(work: Path) -> StageResult:
        for name, text in files.items():
            (work / name).write_text(text)
        return StageResult(metrics=metrics or {})

    return store.run(stage=stage, format_version=1, config={"files": sorted(files)}, inputs=inputs or [],
                     build=build).artifact


def test_a_run_on_a_corpus_under_100_texts_reports(store: Store):
    rows = [{"anchor": f"t{i}", "positive": f"d{i}", "hard_negatives": [f"d{i + 1}"], "positive_score": 0.9,
             "negative_scores": [0.4]} for i in range(30)]
    mine = _artifact(store, "mine", {"pairs.jsonl": "".join(json.dumps(r) + "\n" for r in rows)},
                     metrics={"positive_at_1": 0.7, "positive_within_10": 0.9, "positive_within_100": None})
    train = _artifact(store, "train", {"model.txt": "weights"}, inputs=[mine])
    dev = _artifact(store, "eval", {"metrics.json": "{}"}, inputs=[train])
    rounds = {"metric": "mrr@10", "base_dev": {"mrr@10": 0.4}, "base_test": {}, "best_round": 1,
              "best_model": "model", "refit": None, "stopped_early": False,
              "rounds": [{"round": 1, "miner": "bm25", "mine": mine.ref, "train": train.ref, "eval_dev": dev.ref,
                          "dev": {"mrr@10": 0.5}, "test": {}, "improved": True, "overlap_with_previous": None,
                          "model_path": "model"}]}
    sentence = ("On your 30 dev terms, fine-tuning with mined negatives (round 1) scored +0.100 MRR@10 over the "
                "base model, 95% interval [+0.050, +0.150]: fine-tuning helped; mining's own share was not measured")
    rounds["mining_gain"] = {"sentence": sentence, "mean": 0.1, "low": 0.05, "high": 0.15}
    iterate = _artifact(store, "iterate", {"rounds.json": json.dumps(rounds)}, inputs=[train])
    report = run_report(store, ReportConfig(), iterate.ref).artifact
    assert report.file("ranks.png").stat().st_size > 1000  # the two defined shares are plotted
    page = report.file("index.html").read_text()
    assert "Where the positive ranked" in page
    assert f"<p class=gain><b>What mining bought:</b> {sentence}</p>" in page  # unmangled, apostrophes kept
    assert page.index(sentence) < page.index("<b>Result:</b>")  # the first thing after the title


@pytest.mark.parametrize("bins", [0, -1, 100_000])
def test_bins_out_of_range_are_refused(bins: int):
    with pytest.raises(ConfigError, match=f"field 'bins': {bins} is out of range"):
        ReportConfig(bins=bins).validate()
