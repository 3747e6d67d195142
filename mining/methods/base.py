"""The mining-method protocol: what a retriever declares (settings, sections, dense or not) and does.

A method is one module that builds a `Method` (a `Plugin` with its own settings dataclass, the
config table `[mine.NAME]`) and implements `retrieve`: ranked candidates for every anchor. The mine
stage does the rest the same way for every method (exclusions, rank window, margins, cross-encoder,
exports); it asks the method only how it scores pairs (the positives' reference scores, and the
previous round's negatives under `merge_previous`) and how it ranks the texts of one group
(`same_group`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from pipe_embed.mining.candidates import Candidates
from pipe_embed.mining.corpus import CandidateCorpus, as_index_array, reduce_min
from pipe_embed.mining.groups import Scorer
from pipe_embed.pipeline.core.config import params_of
from pipe_embed.pipeline.core.plugins import Plugin

T = TypeVar("T")
DENSE_RELATIVE_MARGIN = 0.05  # the relative margin of cosine-scored methods when --relative-margin is unset


@dataclass
class Context:
    """What a method retrieves from: the resolved mine config, anchors, candidate texts, positives, depth."""

    config: Any  # the resolved MineConfig (only the sections the method uses)
    anchors: list[str]
    corpus: CandidateCorpus
    positives: list[list[int]]  # corpus indices of each anchor's positives
    k: int  # candidates per anchor to return (the retrieval depth)
    encoder: Any = None  # the dense encoder (cache included) when the method is dense
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # timings per step, for the stats

    def params(self, cls: type[T]) -> T:
        """The settings of one section, typed: `ctx.params(FaissParams)`."""
        return params_of(self.config, cls)


@dataclass
class Retrieved:
    """Ranked candidates, the positives' scores and what retrieval built (vectors, the BM25 index)."""

    cands: Candidates
    positive_scores: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    query_vectors: np.ndarray | None = None
    corpus_vectors: np.ndarray | None = None
    bm25: Any = None
    query_tokens: list[list[str]] | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    state: Any = None  # whatever else a method keeps for its pair_scores and scorer

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The anchor and text vectors of a dense retrieval; a TypeError when the method made none."""
        if self.query_vectors is None or self.corpus_vectors is None:
            raise TypeError("this retrieval holds no anchor and text vectors: only a dense method's does")
        return self.query_vectors, self.corpus_vectors


@dataclass(frozen=True)
class Method(Plugin):
    """A mining method: how candidates are retrieved and scored. Subclass it and override `retrieve`
    and `pair_scores` (`positive_scores` and `scorer` have defaults built on them)."""

    dense: bool = False  # needs the embedding model: encoder, model fingerprint in the version, vectors
    uses: tuple[str, ...] = ()  # the settings sections it reads (default: its own, when it has settings)
    relative_margin: float | None = None  # the relative margin when --relative-margin is unset

    @property
    def sections(self) -> tuple[str, ...]:
        """The sections whose settings decide this method's output (what the resolved config keeps)."""
        return self.uses or ((self.name,) if self.params is not None else ())

    def retrieve(self, ctx: Context) -> Retrieved:
        """Up to ctx.k ranked candidates (corpus indices, best first) for every anchor."""
        raise NotImplementedError(f"mining method {self.name!r} does not implement retrieve")

    def pair_scores(self, found: Retrieved, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """This method's score of (anchor row, corpus index) pairs: it rescores merge_previous's negatives."""
        raise NotImplementedError(f"mining method {self.name!r} does not implement pair_scores")

    def positive_scores(self, ctx: Context, found: Retrieved) -> np.ndarray:
        """Each anchor's reference score for the margin filters: its lowest-scoring (hardest) positive."""
        rows, ids = as_index_array(ctx.positives)
        return reduce_min(self.pair_scores(found, rows, ids), rows, len(ctx.anchors))

    def scorer(self, ctx: Context, found: Retrieved) -> Scorer:
        """How `same_group` ranks an anchor's group: (ranking key, scores) of anchors x the group's texts."""
        def score(anchors: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sims = self.pair_scores(found, np.repeat(anchors, len(docs)), np.tile(docs, len(anchors)))
            sims = np.asarray(sims, dtype=np.float32).reshape(len(anchors), len(docs))
            return sims, sims

        return score


__all__ = ["Method", "Context", "Retrieved", "DENSE_RELATIVE_MARGIN"]
