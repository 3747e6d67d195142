"""Losses: KURE's weighted symmetric loss (by hand, against the library, a run) and losses as plug-ins
(a new one registered here trains; each loss's settings come from its own table, flags and help panel)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from pipe_embed.pipeline.core.config import option
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.config import TrainConfig, load_train_config
from pipe_embed.training.losses import LOSSES, Loss, WeightedSymmetricLoss
from pipe_embed.training.losses.symmetric import SymmetricParams
from tests.training.conftest import make_mine

SCALE = 20.0


def tiny_batch() -> list[torch.Tensor]:
    """Anchors, positives and one mined negative each: 3 rows of 4-d vectors."""
    gen = torch.Generator().manual_seed(3)
    return [torch.randn(3, 4, generator=gen) for _ in range(3)]


def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def info_nce(logits: list[float], target: int) -> float:
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


def by_hand(q2d_weight: float, d2q_weight: float) -> float:
    """q2d: anchor i against every positive and every mined negative of the batch; d2q: positive i against
    every anchor of the batch. Each a mean cross-entropy with the true pair as the target."""
    anchors, positives, negatives = (t.tolist() for t in tiny_batch())
    rows = range(len(anchors))
    q2d = [info_nce([SCALE * cos(anchors[i], d) for d in positives + negatives], i) for i in rows]
    d2q = [info_nce([SCALE * cos(positives[i], a) for a in anchors], i) for i in rows]
    return q2d_weight * sum(q2d) / len(q2d) + d2q_weight * sum(d2q) / len(d2q)


@pytest.mark.parametrize("q2d,d2q", [(0.2, 0.8), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_the_loss_is_the_weighted_sum_of_both_directions(q2d: float, d2q: float) -> None:
    loss = WeightedSymmetricLoss(None, q2d_weight=q2d, d2q_weight=d2q, scale=SCALE)
    value = loss.compute_loss_from_embeddings(tiny_batch(), torch.zeros(3))
    assert value.item() == pytest.approx(by_hand(q2d, d2q), rel=1e-5)


def test_equal_weights_are_the_librarys_symmetric_loss() -> None:
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    ours = WeightedSymmetricLoss(None, q2d_weight=0.5, d2q_weight=0.5, scale=SCALE)
    library = MultipleNegativesRankingLoss(None, scale=SCALE, directions=("query_to_doc", "doc_to_query"),
                                           partition_mode="per_direction")
    batch = tiny_batch()
    assert ours.compute_loss_from_embeddings(batch, None).item() == pytest.approx(
        library.compute_loss_from_embeddings(batch, None).item(), rel=1e-6)
    # the two directions really differ (d2q has no mined negatives), so each weight matters
    q2d = WeightedSymmetricLoss(None, q2d_weight=1.0, d2q_weight=0.0, scale=1.0).compute_loss_from_embeddings(batch, None)
    d2q = WeightedSymmetricLoss(None, q2d_weight=0.0, d2q_weight=1.0, scale=1.0).compute_loss_from_embeddings(batch, None)
    assert abs(q2d.item() - d2q.item()) > 0.1


def test_gradients_reach_anchors_positives_and_negatives() -> None:
    batch = [t.clone().requires_grad_(True) for t in tiny_batch()]
    WeightedSymmetricLoss(None, q2d_weight=0.2, d2q_weight=0.8).compute_loss_from_embeddings(batch, None).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in batch)


def test_weights_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'q2d_weight'.*both 0"):
        load_train_config(None, {"loss": "symmetric", "symmetric": {"q2d_weight": 0.0, "d2q_weight": 0.0}})
    with pytest.raises(ConfigError, match="'d2q_weight'"):
        load_train_config(None, {"loss": "symmetric", "symmetric": {"d2q_weight": -1.0}})
    with pytest.raises(ConfigError, match="'loss'"):
        load_train_config(None, {"loss": "symetric"})


def test_a_run_with_the_symmetric_loss_trains(store: Store, tiny_model_path: Path, mine_artifact) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from pipe_embed.training.train import MODEL_DIR, run_train

    config = TrainConfig(model=str(tiny_model_path), device="cpu", batch_size=4, max_steps=3, lr=1e-3, eval_steps=0,
                         patience=0, eval_base=False, loss="symmetric", params={"symmetric": SymmetricParams(0.2, 0.8)})
    art = run_train(store, config, mine_artifact.ref).artifact
    train = art.metrics["train"]
    assert train["steps"] == 3 and math.isfinite(train["train_loss"]) and train["train_loss"] > 0
    assert (art.config["loss"], art.config["params"]) == ("symmetric", {"symmetric": {"q2d_weight": 0.2,
                                                                                       "d2q_weight": 0.8}})
    assert art.stats["negatives_per_row"] == 3  # mined negatives still go into the q2d direction
    trained = SentenceTransformer(str(art.file(MODEL_DIR)), device="cpu")
    base = SentenceTransformer(str(tiny_model_path), device="cpu")
    assert not np.allclose(trained.encode(["rook"]), base.encode(["rook"]), atol=1e-6)


# -- losses as plug-ins: a new one registered by a test, sections in files and flags, help panels --------

@dataclass
class ToyParams:
    toy_weight: float = option(1.0, "Factor on the toy loss (a name no other loss uses).")


CALLS: dict[str, list] = {"built": [], "columns": [], "labels": []}


def build_toy(model, config, device, params):
    """MNRL times `toy_weight`, recording how it was built and what each batch held."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    class Counted(MultipleNegativesRankingLoss):
        def forward(self, features, labels):
            CALLS["columns"].append(len(features))
            CALLS["labels"].append(None if labels is None else labels.detach().cpu().tolist())
            return super().forward(features, labels) * params.toy_weight

    CALLS["built"].append((params, device, config.temperature))
    return Counted(model, scale=1.0 / TOY.temperature_of(config))


TOY = Loss("toy", "a loss a test adds", ToyParams, build=build_toy, needs_negatives=False, temperature=0.1)
SCORED = Loss("toy-scored", "a loss that reads the miner's scores", None, build=lambda m, c, d, p: build_toy(
    m, c, d, ToyParams()), needs_scores=True, max_negatives=2)


@pytest.fixture()
def toy_losses():
    """TOY and SCORED registered for one test, gone afterwards."""
    for value in CALLS.values():
        value.clear()
    LOSSES.register(TOY)
    LOSSES.register(SCORED)
    yield
    LOSSES.unregister(TOY.name)
    LOSSES.unregister(SCORED.name)


def test_a_loss_registered_in_a_test_trains_with_its_own_settings(store: Store, tiny_model_path: Path,
                                                                  mine_artifact, toy_losses, tmp_path: Path) -> None:
    from pipe_embed.training.train import run_train

    file = tmp_path / "pipe.toml"
    file.write_text(f'[train]\nloss = "toy"\nmodel = "{tiny_model_path.as_posix()}"\ndevice = "cpu"\n'
                    "batch_size = 4\nmax_steps = 2\nmin_steps = 0\nlr = 1e-3\neval_steps = 0\neval_base = false\n"
                    "[train.toy]\ntoy_weight = 2.0\n")
    config = load_train_config(file)
    art = run_train(store, config, mine_artifact.ref).artifact
    assert CALLS["built"] == [(ToyParams(toy_weight=2.0), "cpu", None)]  # built once, with the table's settings
    assert CALLS["columns"] and set(CALLS["columns"]) == {2}  # anchor and positive only: it asked for no negatives
    assert art.config["loss"] == "toy" and art.config["params"] == {"toy": {"toy_weight": 2.0}}
    assert art.stats["negatives_per_row"] == 0 and art.metrics["train"]["steps"] == 2
    with pytest.raises(ConfigError, match=r"unknown field 'toy_weight': it is a setting of \[train.toy\]"):
        load_train_config(None, {"loss": "toy", "toy_weight": 3.0})


def test_the_registry_is_the_only_list_of_losses(toy_losses) -> None:
    assert LOSSES.names()[:4] == ["mnrl", "cached-mnrl", "gist", "symmetric"] and "toy" in LOSSES
    LOSSES.unregister("toy")
    with pytest.raises(ConfigError, match="field 'loss': unknown loss 'toy'"):
        load_train_config(None, {"loss": "toy"})


def scored_mine(store: Store, compose) -> object:
    """A mine-like artifact whose rows carry the miner's scores (one anchor without any)."""
    from pipe_embed.pipeline.core.pairs import pairs_file, read_pairs, write_jsonl
    from pipe_embed.pipeline.core.store import StageResult

    rows = read_pairs(compose.file(pairs_file("train")))
    texts = [r["positive"] for r in rows]
    out = []
    for i, row in enumerate(rows):
        negatives = [t for t in texts if t not in row["positives"]][i % 3: i % 3 + 3]
        scored = {"positive_score": 0.9, "negative_scores": [0.5 - 0.1 * j for j in range(3)]} if i else {}
        out.append({**row, "hard_negatives": negatives, **scored})

    def build(work: Path) -> StageResult:
        write_jsonl(work / pairs_file("train"), out)
        return StageResult(stats={"rows": len(out)})

    return store.run(stage="mine", format_version=1, config={"method": "scored"}, inputs=[compose],
                     build=build).artifact


def test_a_loss_that_needs_scores_gets_them_as_labels(store: Store, tiny_model_path: Path, compose_artifact,
                                                      toy_losses) -> None:
    from pipe_embed.training.train import run_train

    mine = scored_mine(store, compose_artifact)
    config = TrainConfig(model=str(tiny_model_path), device="cpu", batch_size=4, max_steps=2, min_steps=0, lr=1e-3,
                         eval_steps=0, patience=0, eval_base=False, loss="toy-scored")
    art = run_train(store, config, mine.ref).artifact
    assert art.stats["negatives_per_row"] == 2 and art.stats["anchors_without_scores"] == 1
    assert set(CALLS["columns"]) == {4}  # anchor, positive, 2 negatives: the label column is not a text
    assert all(row == pytest.approx([0.9, 0.5, 0.4]) for batch in CALLS["labels"] for row in batch)
    with pytest.raises(PipeError, match="needs positive_score and negative_scores"):
        run_train(store, dataclasses.replace(config, max_steps=3), make_mine(store, compose_artifact).ref)


def test_train_help_has_a_panel_per_loss_with_settings() -> None:
    from typer.testing import CliRunner

    from pipe_embed.pipeline.cli import app

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0, result.output
    for title, flag in (("--loss cached-mnrl: MNRL with GradCache", "--mini-batch-size"),
                        ("--loss gist: MNRL with a guide model", "--guide-model"),
                        ("--loss symmetric: term -> definition and definition -> term", "--q2d-weight")):
        assert title in result.output and flag in result.output
    assert "mnrl, cached-mnrl, gist, symmetric" in result.output  # --loss names every built-in


def test_a_gist_table_reaches_gist_and_a_flat_guide_model_is_refused(store: Store, tiny_model_path: Path,
                                                                     mine_artifact, tmp_path: Path) -> None:
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    from pipe_embed.pipeline.cli.options import overrides
    from pipe_embed.training.losses.gist import GistParams
    from pipe_embed.training.train import build_loss, prepare_model, run_train

    file = tmp_path / "pipe.toml"
    file.write_text(f'[train]\nloss = "gist"\n[train.gist]\nguide_model = "{tiny_model_path.as_posix()}"\n')
    config = load_train_config(file, {"device": "cpu", "model": str(tiny_model_path)})
    assert config.loss_params() == GistParams(guide_model=tiny_model_path.as_posix())
    loss = build_loss(config, prepare_model(config, "cpu"), "cpu")
    assert isinstance(loss, GISTEmbedLoss) and loss.temperature == 0.01  # gist's own default temperature
    assert not any(p.requires_grad for p in loss.guide.parameters())
    flag = load_train_config(file, overrides(TrainConfig, {"gist__guide_model": "other/guide"}))
    assert flag.loss_params().guide_model == "other/guide"  # --guide-model wins over the table

    art = run_train(store, dataclasses.replace(config, max_steps=2, min_steps=0, batch_size=4, eval_base=False,
                                               eval_steps=0), mine_artifact.ref).artifact
    assert art.config["params"] == {"gist": {"guide_model": tiny_model_path.as_posix()}}  # only the chosen loss's
    assert "guide_weights" in art.manifest["fingerprint_extra"] and art.stats["negatives_per_row"] == 1

    file.write_text(f'[train]\nloss = "gist"\nguide_model = "{tiny_model_path.as_posix()}"\n')
    with pytest.raises(ConfigError, match=r"\[train\] unknown field 'guide_model': it is a setting of \[train.gist\]"):
        load_train_config(file)
