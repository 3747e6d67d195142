"""Mining methods as plug-ins: a new one registered in a test, per-method settings sections and help panels."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipe_embed.mining.candidates import Candidates
from pipe_embed.mining.methods import METHODS, Context, Method, Retrieved
from pipe_embed.mining.methods import bm25 as bm25_method
from pipe_embed.mining.methods.bm25 import STOPWORDS, BM25Params
from pipe_embed.mining.methods.faiss import FaissParams
from pipe_embed.mining.methods.hybrid import HybridParams
from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.cli import app
from pipe_embed.pipeline.core.config import load_config, option, params_of, versioned_dict
from pipe_embed.pipeline.core.errors import ConfigError
from pipe_embed.pipeline.core.pairs import CORPUS_FILE, read_corpus, read_pairs
from pipe_embed.pipeline.core.store import Artifact, Store
from pipe_embed.pipeline.orchestrate.iterate import IterateConfig
from tests.mining.test_stage import assert_no_false_negatives

runner = CliRunner()
WIDE = {"COLUMNS": "400"}  # rich wraps long help lines otherwise


# -- a new method, declared and registered here: one small class and one register call -----------------

@dataclass
class ByLengthParams:
    longest: bool = option(False, "Rank the longest texts first (else the shortest).")


@dataclass(frozen=True)
class ByLength(Method):
    """Candidates ranked by text length: a toy whose negatives are easy to recognise."""

    def retrieve(self, ctx: Context) -> Retrieved:
        lengths = np.array([len(t) for t in ctx.corpus.texts], dtype=np.float32)
        key = lengths if ctx.params(ByLengthParams).longest else -lengths
        order = np.argsort(-key, kind="stable")[: ctx.k]
        ids = np.tile(order, (len(ctx.anchors), 1))
        return Retrieved(Candidates(ids, np.tile(key[order], (len(ctx.anchors), 1))), seconds=ctx.seconds, state=key)

    def pair_scores(self, found: Retrieved, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return found.state[ids]


BY_LENGTH = ByLength("by-length", "texts ranked by their length", ByLengthParams)


@pytest.fixture()
def by_length():
    METHODS.register(BY_LENGTH)
    yield BY_LENGTH
    METHODS.unregister(BY_LENGTH.name)


def mined(artifact: Artifact) -> dict[str, dict]:
    return {r["anchor"]: r for r in read_pairs(artifact.file("pairs.jsonl"))}


def test_a_method_registered_in_a_test_mines_through_run_mine(store: Store, compose: Artifact, by_length):
    config = MineConfig(method="by-length", num_negatives=2, range_max=10,
                        params={"by-length": ByLengthParams(longest=True), "faiss": FaissParams(index="ivf")})
    art = run_mine(store, config, compose).artifact
    assert art.stats["method"] == "by-length"
    assert art.config["params"] == {"by-length": {"longest": True}}  # only the sections the method reads
    rows = mined(art)
    assert_no_false_negatives(rows)
    lengths = sorted((len(r["text"]) for r in read_corpus(compose.file(CORPUS_FILE))), reverse=True)
    for r in rows.values():
        assert r["negative_scores"] == [float(len(t)) for t in r["hard_negatives"]]  # its scores, its order
        assert r["positive_score"] == min(float(len(p)) for p in r["positives"])  # its positive-score scale
        assert len(r["hard_negatives"]) == 2  # among the longest texts, past the anchor's own few exclusions
        assert all(len(t) >= lengths[2 + 4] for t in r["hard_negatives"])
    shortest = mined(run_mine(store, MineConfig(method="by-length", num_negatives=2, range_max=10), compose).artifact)
    assert all(len(shortest[a]["hard_negatives"][0]) < len(rows[a]["hard_negatives"][-1]) for a in rows)
    grouped = run_mine(store, MineConfig(method="by-length", num_negatives=2, range_max=10, same_group="source"),
                       compose).artifact  # the default scorer (pair by pair) ranks the group
    assert grouped.stats["same_group"]["groups"] == 1
    for r in mined(grouped).values():
        assert r["negative_scores"] == [-float(len(t)) for t in r["hard_negatives"]]  # shortest first
        assert len(r["hard_negatives"]) == 2
    remined = run_mine(store, dataclasses.replace(config, range_min=2, merge_previous=True), art).artifact
    assert remined.stats["merged_previous"] > 0  # last round's negatives, rescored by the method's pair_scores
    for r in mined(remined).values():
        assert r["negative_scores"] == [float(len(t)) for t in r["hard_negatives"]]


def test_an_unregistered_method_is_refused_by_name(by_length):
    METHODS.unregister("by-length")
    with pytest.raises(ConfigError, match="unknown mining method 'by-length'"):
        MineConfig(method="by-length").validate()
    with pytest.raises(ConfigError, match="did you mean 'hybrid'"):
        MineConfig(method="hybird").validate()


def test_iterate_first_round_takes_in_batch_or_any_registered_method(by_length):
    IterateConfig(first="in-batch").validate()
    IterateConfig(first="by-length").validate()
    with pytest.raises(ConfigError, match=r"field 'first': 'bm52'.*did you mean 'bm25'"):
        IterateConfig(first="bm52").validate()


# -- settings sections ----------------------------------------------------------------------------------

def test_a_bm25_table_reaches_bm25_and_a_flat_key_is_refused(store: Store, compose: Artifact, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    file = tmp_path / "pipe.toml"
    file.write_text('[mine]\nmethod = "bm25"\nrange_max = 10\n[mine.bm25]\nk1 = 0.9\nb = 0.3\nstemmer = "none"\n')
    config = load_config(MineConfig, "mine", file)
    seen: dict = {}
    real = bm25_method.make_index

    def recording(tokens, backend, **params):
        seen.update(params, backend=backend)
        return real(tokens, backend, **params)

    monkeypatch.setattr(bm25_method, "make_index", recording)
    art = run_mine(store, config, compose).artifact
    assert seen == {"k1": 0.9, "b": 0.3, "method": "lucene", "backend": "bm25s"}
    assert art.config["params"]["bm25"]["stemmer"] == "none" and set(art.config["params"]) == {"bm25"}
    file.write_text('[mine]\nmethod = "bm25"\nk1 = 0.9\n')
    with pytest.raises(ConfigError, match=r"\[mine\] unknown field 'k1': it is a setting of \[mine.bm25\]"):
        load_config(MineConfig, "mine", file)
    file.write_text("[mine.faiss]\nnprobe = 0\n")
    with pytest.raises(ConfigError, match=r"\[mine.faiss\] field 'nprobe': must be at least 1"):
        load_config(MineConfig, "mine", file)


def test_the_version_holds_only_the_sections_the_method_reads():
    other_bm25 = {"bm25": BM25Params(k1=0.1), "hybrid": HybridParams(rrf_k=3)}
    faiss = MineConfig(method="faiss").resolved()
    assert set(faiss.params) == {"faiss"} and params_of(faiss, FaissParams) == FaissParams()
    assert versioned_dict(MineConfig(method="faiss", params=other_bm25).resolved()) == versioned_dict(faiss)
    assert set(MineConfig(method="hybrid").resolved().params) == {"bm25", "faiss", "hybrid"}
    assert versioned_dict(MineConfig(method="hybrid", params=other_bm25).resolved()) != \
        versioned_dict(MineConfig(method="hybrid").resolved())
    as_table = MineConfig(method="bm25", params={"bm25": {"k1": 0.4}}).resolved()  # a plain table is built
    assert params_of(as_table, BM25Params).k1 == 0.4


def test_bm25_settings_are_checked_against_what_the_libraries_know():
    import bm25s

    for name in [*STOPWORDS, *STOPWORDS.values()]:
        BM25Params(stopwords=name).validate()
        assert bm25s.tokenize(["the rook"], stopwords=name, return_ids=False, show_progress=False)
    for value in ("none", "", "off", None):
        BM25Params(stopwords=value, stemmer=value).validate()
    BM25Params(stemmer="french").validate()
    for kwargs, field in [({"stopwords": "klingon"}, "stopwords"), ({"stemmer": "klingon"}, "stemmer"),
                          ({"k1": -1.0}, "k1"), ({"b": 5.0}, "'b'"), ({"b": -0.1}, "'b'")]:
        with pytest.raises(ConfigError, match=field):
            BM25Params(**kwargs).validate()
    BM25Params(k1=0.0, b=0.0).validate()
    BM25Params(b=1.0).validate()


# -- the CLI ----------------------------------------------------------------------------------------------

def test_mine_help_has_a_panel_per_method_after_the_common_flags():
    text = runner.invoke(app, ["mine", "--help"], env=WIDE).stdout
    titles = [f"--method {m.name}: {m.help}" for m in METHODS.entries() if m.params is not None]
    assert len(titles) == 3
    positions = [text.index(t) for t in titles]
    assert text.index("--num-negatives") < min(positions)  # common flags first
    for title, flag in zip(titles, ("--k1", "--nprobe", "--rrf-k")):
        start = text.index(title)
        assert start < text.index(flag) < min([p for p in positions if p > start] + [len(text)])
    assert "bm25|faiss|hybrid" in text  # --method lists the registered methods
    short = runner.invoke(app, ["iterate", "--help"], env=WIDE).stdout
    assert "Mining (each round)" in short and "--num-negatives" in short
    assert "--k1" not in short and "--method bm25:" not in short  # iterate keeps a short mining panel


def test_method_flags_keep_their_names_and_fill_their_sections(store: Store, compose: Artifact):
    result = runner.invoke(app, ["mine", "--method", "bm25", "--data-dir", str(store.root), "--range-max", "10",
                                 "--k1", "0.8", "--b", "0.25", "--stopwords", "en", "--index", "ivf", "--rrf-k", "7"])
    assert result.exit_code == 0, result.output
    art = store.resolve(result.stdout.strip().splitlines()[-1])
    assert set(art.config["params"]) == {"bm25"}  # the faiss and hybrid flags do not touch a bm25 run
    bm25 = art.config["params"]["bm25"]
    assert (bm25["k1"], bm25["b"], bm25["stopwords"]) == (0.8, 0.25, "en")


def test_a_dense_only_filter_names_the_dense_methods():
    with pytest.raises(ConfigError, match=r"max_positive_similarity.*faiss, hybrid"):
        MineConfig(method="bm25", max_positive_similarity=0.9).validate()
