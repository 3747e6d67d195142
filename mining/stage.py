"""The mine stage: fill the train split's `hard_negatives` with candidates of a mining method.

The method (bm25, faiss, hybrid, or a registered one: `mining.methods`) retrieves ranked candidates;
everything after that is the same for every method.

Input is a compose artifact, or a previous mine artifact (re-mining: the candidates still come
from its compose artifact; the previous negatives are known, for the overlap diagnostic and for
`merge_previous`). Candidates are every positive of the compose `corpus.jsonl` plus an optional
extra corpus file. The artifact holds `pairs.jsonl` (train split; dev/test stay in compose and are
found through `store.upstream`), optional exports, `diagnostics/`, and the manifest. The version
includes the model's weight hash for dense methods, so a retrained model is a new version, and only the
settings sections the method reads.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from pipe_embed.mining.corpus import (
    CandidateCorpus,
    build_corpus,
    build_exclusions,
    positive_indices,
    read_extra_corpus,
    term_definitions,
)
from pipe_embed.mining.export import FORMATS
from pipe_embed.mining.methods import METHODS
from pipe_embed.mining.methods.base import Context, Method, Retrieved
from pipe_embed.mining.selection import (
    KEEP,
    Selection,
    SelectionParams,
    apply_drops,
    candidate_band,
    exclusion_codes,
    refine,
    score_filter_masks,
    select_negatives,
)
from pipe_embed.pipeline.core.config import keep_sections, option
from pipe_embed.pipeline.core.console import debug, info, warn
from pipe_embed.pipeline.core.errors import ConfigError, PipeError
from pipe_embed.pipeline.core.hashing import hash_file
from pipe_embed.pipeline.core.models import DEFAULT_MODEL
from pipe_embed.pipeline.core.pairs import (
    CORPUS_FILE,
    PairRow,
    doc_id,
    pairs_file,
    read_corpus,
    read_pairs,
    write_jsonl,
)
from pipe_embed.pipeline.core.plugins import Registry
from pipe_embed.pipeline.core.store import Artifact, RunOutcome, StageResult, Store, finite_json

STAGE = "mine"
FORMAT_VERSION = 1
DIAGNOSTICS_DIR = "diagnostics"
EXPORT_DIR = "export"


@dataclass
class MineConfig:
    """How hard negatives are mined and filtered; each method's own settings are its section in `params`."""

    SECTIONS: ClassVar[Registry[Method]] = METHODS

    method: str = option("faiss", "Candidate retrieval: a mining method (bm25, faiss, hybrid; each has its panel below).")
    model: str = option(DEFAULT_MODEL, "Embedding model of the dense methods (faiss, hybrid): id or local directory (iterate passes a trained model).")
    num_negatives: int = option(3, "Hard negatives per anchor (anchors left with fewer are kept and counted).", short="-n")
    range_min: int = option(0, "Skip this many best-ranked candidates (after removing positives and duplicates).")
    range_max: int = option(30, "Consider candidates ranked below this (after removing positives and duplicates).")
    sampling: Literal["top", "random"] = option("top", "Take the best surviving candidates, or a seeded random draw.")
    seed: int = option(42, "Seed of random sampling.")
    max_score: float | None = option(None, "Drop candidates scoring above this.")
    min_score: float | None = option(None, "Drop candidates scoring below this.")
    margin: float | None = option(None, "Absolute margin: drop a candidate when its score + margin > the positive's.")
    relative_margin: float | None = option(None, "Drop a candidate scoring above (1 - m) x the positive's score; unset = 0.05 for the cosine-scored methods (faiss, hybrid), off for bm25.")
    max_positive_similarity: float | None = option(None, "Dense methods: drop a candidate whose similarity to one of the anchor's positives is at least this (paraphrases of the definition).")
    cross_encoder: str | None = option(None, "Cross-encoder that rescores surviving candidates and drops those it scores at least as high as the positive.")
    cross_encoder_margin: float = option(0.0, "Drop when cross-encoder score >= positive's score - this margin.")
    corpus: str | None = option(None, "Extra candidate texts: a JSONL file of {text[, id]} or a text file with one per line.")
    formats: list[str] = option([], "Exports besides pairs.jsonl: flag, st-ntuple, st-triplet, lexdpr (queries + corpus JSONL with ids), hf (datasets save_to_disk).", flag="--format")
    batch_size: int = option(64, "Encoding batch size (not part of the version: it does not change the vectors).",
                             versioned=False)
    backend: Literal["auto", "torch", "openvino", "onnx"] = option(
        "auto", "Encoding backend: auto = on CPU the first installed of OpenVINO in the CPU's native precision (bf16 "
        "on AMX), OpenVINO f32, ONNX Runtime f32 whose vectors pass a cosine check against torch's, else torch; "
        "openvino/onnx need their extra. Not part of the version: float32 gives torch's vectors, bf16 moves them "
        "slightly (cached apart).",
        versioned=False)
    precision: Literal["auto", "f32"] = option(
        "auto", "Encoding precision of a fast backend: auto = the CPU's native one when it passes the cosine check "
        "(bf16 on AMX: faster, a few anchors may get a different near-tie negative), f32 = torch's exact vectors "
        "(and negatives). Not part of the version, like the backend.", versioned=False)
    query_prompt: str | None = option(None, "Prompt prepended to anchors when encoding (e.g. 'query: ').")
    passage_prompt: str | None = option(None, "Prompt prepended to candidate texts when encoding (e.g. 'passage: ').")
    search_batch_size: int = option(4096, "Queries per search chunk (bounds memory; not part of the version).",
                                    versioned=False)
    diagnostics_depth: int = option(100, "Retrieve at least this deep, to report the positive's rank within 100.")
    merge_previous: bool = option(False, "Re-mining: also keep the previous round's negatives that pass this round's filters.")
    same_group: str | None = option(None, "Draw negatives only from texts of the anchor's group: a column compose carried (section, page, a --group-cols column) or source; the method's scores rank them.")
    # where dense encoding and search run: the same candidates either way, so not versioned
    executor: Literal["local", "ray"] = option("local", "Run dense encoding and search in-process (local) or as Ray tasks over shards of anchors and corpus (ray; pip install 'pipe-embed[ray]').", versioned=False)
    address: str | None = option(None, "ray: the cluster to use: auto (a running one), ray://HOST:10001 (Ray Client); unset starts a local instance.", versioned=False)
    num_workers: int = option(0, "ray: parallel workers (tasks at once); 0 = one per CPU, or per GPU, of the cluster.", versioned=False)
    worker_gpu: Literal["auto", "on", "off"] = option("auto", "ray: give each worker a GPU (CUDA encoding, FAISS on GPU when installed): auto = when the cluster has GPUs.", versioned=False)
    worker_fp16: bool = option(False, "ray: GPU workers encode in float16 (faster; the vectors move slightly, so they get their own cache and version).")
    params: dict[str, Any] = option({}, "Each method's own settings by method name: the tables [mine.bm25], [mine.faiss] …", cli=False)

    def validate(self) -> None:
        """Check ranges and names; raises ConfigError naming the field."""
        method = self.retriever
        if self.num_negatives < 1:
            raise ConfigError("field 'num_negatives': must be at least 1")
        if self.range_min < 0:
            raise ConfigError("field 'range_min': must be >= 0")
        if self.range_max <= self.range_min:
            raise ConfigError(f"field 'range_max': must be above range_min ({self.range_min})")
        if self.num_negatives > self.range_max - self.range_min:
            raise ConfigError(f"field 'num_negatives': {self.num_negatives} negatives cannot come from a window of "
                              f"{self.range_max - self.range_min} ranks (range_min {self.range_min}, range_max {self.range_max})",
                              hint="raise --range-max or lower --num-negatives")
        for name in ("margin", "relative_margin", "cross_encoder_margin"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"field '{name}': must be >= 0")
        if self.relative_margin is not None and self.relative_margin >= 1:
            raise ConfigError("field 'relative_margin': must be below 1 (0.05 keeps negatives under 95% of the positive's score)")
        if self.max_positive_similarity is not None and not method.dense:
            dense = ", ".join(m.name for m in METHODS.entries() if m.dense)
            raise ConfigError(f"field 'max_positive_similarity': needs embeddings (a dense method: {dense})")
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise ConfigError(f"field 'formats': unknown format '{unknown[0]}'", hint=f"choose from {', '.join(FORMATS)}")
        for name in ("batch_size", "search_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}': must be at least 1")
        if self.diagnostics_depth < 0:
            raise ConfigError("field 'diagnostics_depth': must be >= 0")
        for section in self.params.values():
            check = getattr(section, "validate", None)
            if callable(check):
                check()

    @property
    def retriever(self) -> Method:
        """The registered mining method this config names (a ConfigError for an unknown name)."""
        return METHODS.get(self.method)

    @property
    def dense(self) -> bool:
        """Whether the method needs the embedding model."""
        return self.retriever.dense

    def with_sections(self, methods: list[str] | tuple[str, ...]) -> MineConfig:
        """The config holding exactly the settings these methods read (defaults where none were given)."""
        return keep_sections(self, [s for m in methods for s in METHODS.get(m).sections])

    def resolved(self) -> MineConfig:
        """The config with method-dependent defaults filled in and only the sections the method reads
        (what the manifest records and the version hashes)."""
        relative = self.relative_margin if self.relative_margin is not None else self.retriever.relative_margin
        return dataclasses.replace(self.with_sections([self.method]), relative_margin=relative)

    def selection(self) -> SelectionParams:
        """The selection subset of the config."""
        return SelectionParams(num_negatives=self.num_negatives, range_min=self.range_min, range_max=self.range_max,
                               sampling=self.sampling, seed=self.seed, max_score=self.max_score,
                               min_score=self.min_score, margin=self.margin, relative_margin=self.relative_margin)


# -- input -------------------------------------------------------------------------------------
@dataclass
class MineInput:
    """What a mine run reads: the train rows, the other splits, the corpus, previous negatives."""

    source: Artifact
    compose: Artifact
    rows: list[PairRow]
    definitions: dict[str, set[str]]  # normalised term -> normalised texts of its definitions, all splits
    corpus_rows: list[dict[str, Any]]
    previous: dict[str, list[str]] | None = None  # anchor id -> previous negative ids


def _as_artifact(store: Store, source: str | Path | Artifact) -> Artifact:
    return source if isinstance(source, Artifact) else store.resolve(source)


def load_input(store: Store, source: str | Path | Artifact) -> MineInput:
    """Read a compose artifact, or a mine artifact and the compose artifact it came from."""
    artifact = _as_artifact(store, source)
    if artifact.stage not in ("compose", "mine"):
        raise PipeError(f"{artifact.ref}: mine reads a compose or mine artifact, not '{artifact.stage}'",
                        hint="use --from compose@latest")
    compose = store.upstream(artifact, "compose")
    if compose is None:
        raise PipeError(f"{artifact.ref}: cannot find the compose artifact it was made from in {store.root}")
    train = compose.file(pairs_file("train"))
    if not train.is_file():
        raise PipeError(f"{compose.ref}: has no {train.name}")
    rows = read_pairs(train)
    for row in rows:  # one string object for the positive, not two (memory at 100k+ rows)
        if row["positives"] and row["positive"] == row["positives"][0]:
            row["positive"] = row["positives"][0]
    definitions = term_definitions(rows)
    for split in ("dev", "test"):
        path = compose.file(pairs_file(split))
        if path.is_file():
            for term, texts in term_definitions(read_pairs(path)).items():
                definitions.setdefault(term, set()).update(texts)
    corpus_path = compose.file(CORPUS_FILE)
    corpus_rows = read_corpus(corpus_path) if corpus_path.is_file() else []
    previous = None
    if artifact.stage == "mine":
        previous = {}
        for row in read_pairs(artifact.file(pairs_file("train"))):
            negs = row.get("hard_negatives") or []
            ids = row.get("negative_ids") or [doc_id(t) for t in negs]
            previous[row["id"]] = list(ids)
    return MineInput(artifact, compose, rows, definitions, corpus_rows, previous)


# -- retrieval ---------------------------------------------------------------------------------
def make_encoder(config: MineConfig, cache_root: Path | None) -> Any:
    """The dense encoder for a config (cache in cache_root); fails early on a model it cannot load."""
    from pipe_embed.mining.dense import Encoder

    encoder = Encoder(config.model, backend=config.backend, batch_size=config.batch_size, cache_root=cache_root,
                      precision=config.precision)
    if not Path(encoder.path).is_dir():
        encoder.model  # noqa: B018 - not a local directory: load now so a bad id fails before any work
    return encoder


def retrieve(ctx: Context) -> Retrieved:
    """Candidates for every anchor by the configured method, and each anchor's positive score.

    The positive score is the lowest over the anchor's positives (the hardest one), the reference
    of the margin filters, in the method's own scale (hybrid: the fused order, dense cosines).
    """
    method = ctx.config.retriever
    found = method.retrieve(ctx)
    found.positive_scores = method.positive_scores(ctx, found)
    return found


def positive_similarity_drops(corpus_vectors: np.ndarray, cand_ids: np.ndarray, band: np.ndarray,
                              positives: list[list[int]], threshold: float) -> np.ndarray:
    """Band slots whose text is at least `threshold` similar to one of the anchor's positives."""
    from pipe_embed.mining.dense import pair_scores

    drops = np.zeros(band.shape, dtype=bool)
    rows, cols = np.nonzero(band)
    if len(rows) == 0:
        return drops
    most = np.full(len(rows), -np.inf, dtype=np.float32)
    width = max(len(p) for p in positives)
    for j in range(width):
        has = np.fromiter((len(positives[r]) > j for r in rows), dtype=bool, count=len(rows))
        pos = np.fromiter((positives[r][j] if len(positives[r]) > j else 0 for r in rows), dtype=np.int64, count=len(rows))
        sims = pair_scores(corpus_vectors, corpus_vectors, cand_ids[rows, cols], pos)
        most = np.where(has, np.maximum(most, sims), most)
    drops[rows, cols] = most >= threshold
    return drops


# -- the run -----------------------------------------------------------------------------------
def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _retrieval_depth(config: MineConfig, max_excluded: int, corpus_size: int) -> int:
    return max(1, min(corpus_size, max(config.range_max + max_excluded, config.diagnostics_depth)))


def _check_sizes(config: MineConfig, inp: MineInput, corpus: CandidateCorpus) -> None:
    if not inp.rows:
        raise PipeError(f"{inp.compose.ref}: the train split is empty, nothing to mine",
                        hint="compose more pairs or lower its dev/test fractions")
    if len(corpus) == 0:
        raise PipeError(f"{inp.compose.ref}: the candidate corpus is empty", hint="add texts with --corpus FILE")
    available = len(corpus) - 1
    if config.range_min + config.num_negatives > available:
        raise PipeError(f"{config.num_negatives} negatives per anchor (after skipping range_min={config.range_min}) "
                        f"asked, but the candidate corpus has only {len(corpus)} texts, one of them the anchor's positive",
                        hint="lower --num-negatives/--range-min or add texts with --corpus FILE")


def _merge_previous(config: MineConfig, inp: MineInput, corpus: CandidateCorpus, retrieved: Retrieved,
                    exclusions: Any, positives: list[list[int]], chosen: list[tuple[np.ndarray, np.ndarray]]) -> int:
    """Append to each row the previous round's negatives that still pass exclusion and filters."""
    assert inp.previous is not None
    rows_prev: list[list[int]] = []
    for q, row in enumerate(inp.rows):
        have = set(chosen[q][0].tolist())
        found: list[int] = []
        for nid in inp.previous.get(row["id"], []):
            index = corpus.position.get(nid)  # a previous negative from a text no longer offered is skipped
            if index is not None and index not in have:
                found.append(index)
        rows_prev.append(found)
    width = max((len(x) for x in rows_prev), default=0)
    if width == 0:
        return 0
    ids = np.full((len(rows_prev), width), -1, dtype=np.int64)
    for q, x in enumerate(rows_prev):
        ids[q, : len(x)] = x
    rows, cols = np.nonzero(ids >= 0)
    scores = np.full(ids.shape, -np.inf, dtype=np.float32)
    scores[rows, cols] = config.retriever.pair_scores(retrieved, rows, ids[rows, cols])  # this round's scale
    allowed = (exclusion_codes(ids, exclusions) == KEEP) & (ids >= 0)
    drops = score_filter_masks(scores, retrieved.positive_scores, config.selection())
    if config.max_positive_similarity is not None and retrieved.corpus_vectors is not None:
        drops["positive_similarity"] = positive_similarity_drops(retrieved.corpus_vectors, ids, allowed, positives,
                                                                 config.max_positive_similarity)
    survivors, _, _ = apply_drops(allowed, drops)
    added = 0
    for q in range(len(rows_prev)):
        keep = survivors[q]
        if keep.any():
            chosen[q] = (np.concatenate([chosen[q][0], ids[q][keep]]), np.concatenate([chosen[q][1], scores[q][keep]]))
            added += int(keep.sum())
    return added


@dataclasses.dataclass
class Prepared:
    """The candidate corpus and what may never be a negative of each anchor."""

    corpus: Any
    extra_count: int
    positives: list[list[int]]
    exclusions: Any
    depth: int
    anchors: list[str]
    groups: Any = None  # same_group: group codes of texts and anchors (pipe_embed.mining.groups)


@dataclasses.dataclass
class Chosen:
    """The selection: survivors per anchor, the chosen (ids, scores), negatives merged from before."""

    selection: Selection
    rows: list[tuple[np.ndarray, np.ndarray]]
    merged: int


def prepare(config: MineConfig, inp: MineInput) -> Prepared:
    """Build the candidate corpus, each anchor's positives and exclusions, and the retrieval depth."""
    extra = read_extra_corpus(config.corpus) if config.corpus else []
    corpus = build_corpus(inp.corpus_rows, extra)
    extra_count = len(extra)
    del extra
    positives = positive_indices(inp.rows, corpus)
    groups = None
    if config.same_group:
        from pipe_embed.mining.groups import build_groups

        groups = build_groups(config.same_group, inp.corpus_rows, corpus, inp.rows, positives, inp.compose.ref)
    inp.corpus_rows = []  # consumed: free it before the large arrays arrive
    _check_sizes(config, inp, corpus)
    exclusions = build_exclusions(inp.rows, corpus, positives, inp.definitions)
    depth = _retrieval_depth(config, exclusions.max_count(), len(corpus))
    return Prepared(corpus=corpus, extra_count=extra_count, positives=positives, exclusions=exclusions,
                    depth=depth, anchors=[r["anchor"] for r in inp.rows], groups=groups)


def select(config: MineConfig, inp: MineInput, prep: Prepared, retrieved: Retrieved) -> Chosen:
    """Apply the false-negative filters (exclusions, window, margins, paraphrases, cross-encoder)."""
    start = time.perf_counter()
    cands, params = retrieved.cands, config.selection()
    codes = exclusion_codes(cands.ids, prep.exclusions)
    extra_drops: dict[str, np.ndarray] = {}
    if config.max_positive_similarity is not None:
        band = candidate_band(cands, codes, params)
        extra_drops["positive_similarity"] = positive_similarity_drops(
            retrieved.vectors()[1], cands.ids, band, prep.positives, config.max_positive_similarity)
    selection: Selection = select_negatives(cands, prep.exclusions, retrieved.positive_scores, params, extra_drops,
                                            codes)
    if config.cross_encoder:
        from pipe_embed.mining.crossencoder import cross_encoder_drops, load_cross_encoder

        ce = load_cross_encoder(config.cross_encoder)
        drops, _, _ = cross_encoder_drops(ce, prep.anchors, [r["positive"] for r in inp.rows], prep.corpus.texts,
                                          cands.ids, selection.survivors, margin=config.cross_encoder_margin,
                                          batch_size=config.batch_size)
        selection = refine(selection, "cross_encoder", drops, params)
    chosen = selection.rows(cands)
    merged = 0
    if config.merge_previous and inp.previous is not None:
        merged = _merge_previous(config, inp, prep.corpus, retrieved, prep.exclusions, prep.positives, chosen)
    retrieved.seconds["select"] = time.perf_counter() - start
    debug(f"selected: peak RSS {_peak_mb():.0f} MB")
    return Chosen(selection=selection, rows=chosen, merged=merged)


def write_pairs(config: MineConfig, inp: MineInput, prep: Prepared, retrieved: Retrieved, chosen: Chosen,
                workdir: Path) -> tuple[list[PairRow], dict[str, Any]]:
    """Write pairs.jsonl (the train rows with their negatives and scores) and the requested exports."""
    from pipe_embed.mining.export import export

    out_rows: list[PairRow] = []
    for q, row in enumerate(inp.rows):
        ids, scores = chosen.rows[q]
        new = row.copy()
        new["hard_negatives"] = [prep.corpus.texts[i] for i in ids]
        new["negative_ids"] = [prep.corpus.ids[i] for i in ids]
        new["negative_scores"] = [round(float(s), 6) for s in scores]
        new["positive_score"] = round(float(retrieved.positive_scores[q]), 6)
        out_rows.append(new)
    write_jsonl(workdir / pairs_file("train"), out_rows)
    exports = export(out_rows, config.formats, workdir / EXPORT_DIR, config.num_negatives,
                     corpus=(prep.corpus.ids, prep.corpus.texts)) if config.formats else {}
    for fmt, counts in exports.items():
        if counts["anchors_left_out"]:
            warn(f"export {fmt}: {counts['anchors_left_out']} anchors left out (too few negatives for that format); "
                 "pairs.jsonl keeps them")
    return out_rows, exports


def write_report(config: MineConfig, inp: MineInput, prep: Prepared, retrieved: Retrieved, chosen: Chosen,
                 out_rows: list[PairRow], exports: dict[str, Any], encoder: Any,
                 workdir: Path) -> StageResult:
    """Diagnostics (where the positive ranked, histograms, drops per filter, overlap) and the stats."""
    from pipe_embed.mining.diagnostics import build_report, plot_histograms, positive_ranks, print_table, round_overlap

    cands, selection = retrieved.cands, chosen.selection
    overlap = None
    if inp.previous is not None:
        overlap = round_overlap({r["id"]: r["negative_ids"] for r in out_rows}, inp.previous)
    ranks = positive_ranks(cands, prep.positives)
    report = build_report(selection=selection, cands=cands, ranks=ranks, positive_scores=retrieved.positive_scores,
                          method=config.method, depth=prep.depth, overlap=overlap)
    report["merged_previous"] = chosen.merged
    diag = workdir / DIAGNOSTICS_DIR
    diag.mkdir()
    plot_histograms(diag / "scores.png", retrieved.positive_scores, cands.scores[selection.chosen],
                    cands.scores[selection.dropped_mask],
                    title=f"{config.method} scores: positives, kept negatives, dropped candidates")
    (diag / "diagnostics.json").write_text(finite_json(report), encoding="utf-8")  # an undefined score is null
    debug(f"written: peak RSS {_peak_mb():.0f} MB")
    print_table(report)
    if selection.short:
        warn(f"{selection.short} of {len(out_rows)} anchors have fewer than {config.num_negatives} negatives "
             f"(by count: {selection.shortfall()}); they are kept as they are, never padded")
    counts = np.array([len(r["hard_negatives"]) for r in out_rows])
    stats = {
        "method": config.method,
        "anchors": len(out_rows),
        "corpus_size": len(prep.corpus),
        "extra_corpus_texts": prep.extra_count,
        "retrieval_depth": prep.depth,
        "negatives": int(counts.sum()),
        "negatives_per_anchor": float(counts.mean()),
        "short_of_negatives": selection.short,
        "share_short_of_negatives": selection.short / len(out_rows),
        "shortfall": selection.shortfall(),
        "dropped": selection.dropped,
        "merged_previous": chosen.merged,
        **({"same_group": prep.groups.stats()} if prep.groups is not None else {}),
        "overlap_with_previous": overlap.get("share_already_negative") if overlap else None,
        "encoder": encoder.backend_name if encoder is not None else None,  # e.g. openvino-bf16; None: all cached
        "embedding_namespace": encoder.namespace if encoder is not None else None,
        "encoded_texts": encoder.encoded if encoder is not None else 0,
        "cache_hits": encoder.cache_hits if encoder is not None else 0,
        "exports": exports,
        "seconds": {k_: round(v, 3) for k_, v in retrieved.seconds.items()},
    }
    rank = report["positive_rank"]
    metrics = {"positive_at_1": rank["at_1"], "positive_within_10": rank["within_10"],
               "positive_within_100": rank["within_100"]}
    headline = {"method": config.method, "anchors": len(out_rows), "neg/anchor": round(float(counts.mean()), 2),
                "short": f"{100 * selection.short / len(out_rows):.1f}%", "pos@1": round(rank["at_1"], 3)}
    return StageResult(stats=stats, metrics=metrics, headline=headline)


def mine(config: MineConfig, inp: MineInput, workdir: Path, cache_root: Path | None,
         encoder: Any = None) -> StageResult:
    """Mine negatives for the train rows: prepare -> retrieve -> select -> write pairs -> report."""
    started = time.perf_counter()
    prep = prepare(config, inp)
    info(f"mining {config.method} negatives for {len(prep.anchors)} anchors among {len(prep.corpus)} candidate texts")
    if config.dense and encoder is None:
        encoder = make_encoder(config, cache_root)
    debug(f"input read: peak RSS {_peak_mb():.0f} MB")
    ctx = Context(config, prep.anchors, prep.corpus, prep.positives, prep.depth, encoder)
    retrieved = retrieve(ctx)
    if prep.groups is not None:  # --same-group: the candidates are the anchor's group, ranked by the method
        from pipe_embed.mining.groups import same_group_candidates

        retrieved.cands = same_group_candidates(prep.groups, prep.depth, config.retriever.scorer(ctx, retrieved))
    took = ", ".join(f"{name} {sec:.1f}s" for name, sec in retrieved.seconds.items())
    debug(f"retrieved top {prep.depth} per anchor ({took}): peak RSS {_peak_mb():.0f} MB")
    chosen = select(config, inp, prep, retrieved)
    out_rows, exports = write_pairs(config, inp, prep, retrieved, chosen, workdir)
    retrieved.seconds["total"] = time.perf_counter() - started
    return write_report(config, inp, prep, retrieved, chosen, out_rows, exports, encoder, workdir)


def fingerprint_extra(config: MineConfig) -> dict[str, Any]:
    """What besides config and inputs decides the output: model weights, extra corpus content."""
    from pipe_embed.pipeline.core.models import model_fingerprint

    extra: dict[str, Any] = {}
    if config.dense:
        extra["model"] = model_fingerprint(config.model)
    if config.cross_encoder:
        extra["cross_encoder"] = model_fingerprint(config.cross_encoder)
    if config.corpus:
        path = Path(config.corpus)
        if not path.is_file():
            raise PipeError(f"{path}: corpus file not found", hint="--corpus takes a JSONL or text file")
        extra["corpus_file"] = hash_file(path)
    return extra


def cache_root(store: Store) -> Path:
    """Where the embedding cache lives: beside the artifacts, shared by every run of the store."""
    return store.root / ".cache" / "embeddings"


def run_mine(store: Store, config: MineConfig, source: str | Path | Artifact = "compose@latest",
             force: bool = False, encoder: Any = None) -> RunOutcome:
    """Mine hard negatives for a compose (or previous mine) artifact; a cache hit when nothing changed."""
    config = config.resolved()
    config.validate()
    inp = load_input(store, source)
    loaded = with_model_path(store, config)  # the config keeps a train@… ref; the work uses its path
    extra = fingerprint_extra(loaded)
    if loaded.dense and encoder is None:
        from pipe_embed.pipeline.core.models import resolve_model

        if not Path(resolve_model(loaded.model)).is_dir():
            make_encoder(loaded, None)  # a model id that is not local: fail now, before any work
    return store.run(stage=STAGE, format_version=FORMAT_VERSION, config=config, inputs=[inp.source],
                     extra=extra, force=force,
                     build=lambda work: mine(loaded, inp, work, cache_root(store), encoder))


def with_model_path(store: Store, config: MineConfig) -> MineConfig:
    """The config with a model ref (`train@<version>`) replaced by that artifact's model path."""
    from pipe_embed.pipeline.core.models import resolve_model_ref

    if not config.dense:
        return config
    return dataclasses.replace(config, model=resolve_model_ref(store, config.model))


def warm_cache(store: Store, config: MineConfig, source: str | Path | Artifact, shard: int,
               num_shards: int) -> dict[str, int]:
    """Encode one shard of the anchors and candidate texts into the embedding cache (no artifact).

    Run shards 0..n-1 anywhere that shares the store (in parallel), then `run_mine` encodes nothing.
    """
    config = config.resolved()
    config.validate()
    if not config.dense:
        dense = ", ".join(m.name for m in METHODS.entries() if m.dense)
        raise ConfigError(f"field 'method': sharded encoding applies to the dense methods ({dense}); "
                          f"{config.method} has nothing to cache")
    if not 0 <= shard < num_shards:
        raise ConfigError(f"--shard {shard} is outside 0..{num_shards - 1}")
    inp = load_input(store, source)
    config = with_model_path(store, config)
    extra = read_extra_corpus(config.corpus) if config.corpus else []
    corpus = build_corpus(inp.corpus_rows, extra)
    positive_indices(inp.rows, corpus)
    encoder = make_encoder(config, cache_root(store))
    anchors = encoder.encode_shard([r["anchor"] for r in inp.rows], config.query_prompt, shard, num_shards,
                                   "encode anchors")
    texts = encoder.encode_shard(corpus.texts, config.passage_prompt, shard, num_shards, "encode corpus")
    return {"anchors_encoded": anchors, "texts_encoded": texts}
