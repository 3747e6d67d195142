"""Term -> definition retrieval on a held-out split over the whole corpus: recall@k, MRR@10, NDCG@10.

Queries are the split's anchors, the corpus is every positive of every split (`corpus.jsonl`), and
an anchor's relevant documents are all of its positives. The reverse direction (definition -> term)
uses the split's positives as queries against every anchor. The metrics follow sentence-transformers'
InformationRetrievalEvaluator exactly (same similarity, ties broken by corpus id, recall = share of
the relevant documents found), computed here with numpy so `iterate` and the trainer can reuse
`evaluate_model` without the evaluator's file output. An eval artifact also keeps the forward
direction's per-query scores (`per_query.jsonl`), whose means are its metrics, for paired comparisons.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipe_embed.pipeline.core.config import versioned_dict
from pipe_embed.pipeline.core.console import info, progress_bar, warn
from pipe_embed.pipeline.core.errors import PipeError
from pipe_embed.pipeline.core.pairs import (
    CORPUS_FILE,
    SPLITS,
    pairs_file,
    read_corpus,
    read_pairs,
)
from pipe_embed.pipeline.core.store import Artifact, RunOutcome, StageResult, Store, finite_json
from pipe_embed.training.config import EvalConfig

STAGE = "eval"
FORMAT_VERSION = 2  # 2: per_query.jsonl
RECALL_AT = (1, 5, 10)
MRR_AT = 10
NDCG_AT = 10
METRIC_NAMES = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
PER_QUERY_FILE = "per_query.jsonl"  # the evaluated model's forward scores, one query a line
PROGRESS_MIN_TEXTS = 2000  # encoding fewer texts takes seconds: no bar
MIN_QUERIES = 30  # below this, one query moves MRR@10 by more than 3 points


@dataclass
class RetrievalTask:
    """Queries, corpus and relevance judgements of one retrieval evaluation."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]
    reverse: bool = False  # queries are definitions (encoded as documents), the corpus is terms


# -- data ------------------------------------------------------------------------------------------

def data_dir_for(store: Store, artifact: Artifact) -> Path:
    """The directory holding dev/test pairs and the corpus: the artifact or its compose ancestor."""
    if artifact.file(CORPUS_FILE).is_file() and (artifact.file(pairs_file("dev")).is_file()
                                                 or artifact.file(pairs_file("test")).is_file()):
        return artifact.path
    compose = store.upstream(artifact, "compose")
    if compose is None:
        raise PipeError(f"{artifact.ref}: has no held-out split and no compose artifact upstream",
                        hint="train/evaluate on a mine or compose artifact built by `pipe compose`")
    return compose.path


def retrieval_task(data_dir: Path, split: str, reverse: bool = False) -> RetrievalTask:
    """Build the retrieval task of a split from an artifact directory (see module doc)."""
    path = data_dir / pairs_file(split)
    if not path.is_file():
        raise PipeError(f"{path}: no '{split}' split in this artifact",
                        hint="compose with a non-zero dev/test fraction, or pick the other --split")
    rows = read_pairs(path)
    corpus_path = data_dir / CORPUS_FILE
    if not corpus_path.is_file():
        raise PipeError(f"{corpus_path}: corpus file missing", hint="rebuild the data with `pipe compose`")
    if not reverse:
        corpus = {row["id"]: row["text"] for row in read_corpus(corpus_path)}
        queries = {row["id"]: row["anchor"] for row in rows}
        relevant = {row["id"]: {pid for pid in row["positive_ids"] if pid in corpus} for row in rows}
        return RetrievalTask(queries, corpus, {q: r for q, r in relevant.items() if r})
    # Reverse: each held-out positive asks for its anchor(s) among every anchor of every split.
    anchors: dict[str, str] = {}
    owners: dict[str, set[str]] = {}
    for name in SPLITS:
        split_path = data_dir / pairs_file(name)
        if not split_path.is_file():
            continue
        for row in read_pairs(split_path):
            anchors[row["id"]] = row["anchor"]
            for pid in row["positive_ids"]:
                owners.setdefault(pid, set()).add(row["id"])
    queries, relevant = {}, {}
    for row in rows:
        for pid, text in zip(row["positive_ids"], row["positives"]):
            queries[pid] = text
            relevant[pid] = owners.get(pid, {row["id"]})
    return RetrievalTask(queries, anchors, relevant, reverse=True)


def measured_queries(task: RetrievalTask) -> int:
    """Queries that count in the metrics: those with a relevant document in the corpus."""
    return sum(1 for q in task.queries if task.relevant.get(q))


_SAID: set[str] = set()


def warn_once(message: str) -> None:
    """A warning shown once per process: `pipe iterate` evaluates and trains on the same splits each round."""
    if message not in _SAID:
        _SAID.add(message)
        warn(message)


def small_split_warning(split: str, queries: int, metric: str = "mrr@10") -> str | None:
    """One line saying a split is too small for its metric to mean anything, or None when it is not."""
    if queries >= MIN_QUERIES or queries == 0:
        return None
    fraction = "--dev-fraction" if split == "dev" else "--test-fraction"
    return (f"the {split} split has only {queries} quer{'y' if queries == 1 else 'ies'}: one query moves "
            f"{metric} by up to {100 / queries:.1f} points, so the {split} figure is noise — run `pipe compose` "
            f"with a larger {fraction} (for at least {MIN_QUERIES} {split} queries)")


# -- metrics ---------------------------------------------------------------------------------------

def _encode(model: Any, texts: list[str], kind: str, prompt: str | None, batch_size: int) -> Any:
    """Embeddings of `texts` as queries or documents; a progress bar from PROGRESS_MIN_TEXTS texts on."""
    import torch

    fn = model.encode_query if kind == "query" else model.encode_document

    def encode(chunk: list[str]) -> Any:
        with torch.inference_mode():
            return fn(chunk, prompt=prompt, batch_size=batch_size, convert_to_tensor=True,
                      show_progress_bar=False)

    if len(texts) < PROGRESS_MIN_TEXTS:
        return encode(texts)
    step = max(batch_size * 8, 256)
    parts = []
    with progress_bar(f"eval: encoding {len(texts):,} {kind}s", len(texts)) as advance:
        for start in range(0, len(texts), step):
            chunk = texts[start:start + step]
            parts.append(encode(chunk))
            advance(len(chunk))
    return torch.cat(parts)


def _top_k(scores: np.ndarray, k: int, id_rank: np.ndarray) -> np.ndarray:
    """Indices of the k best columns per row, ordered by (-score, corpus id), ties included exactly."""
    n = scores.shape[1]
    k = min(k, n)
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    for i, row in enumerate(scores):
        if k < n:
            threshold = np.partition(row, n - k)[n - k]
            candidates = np.flatnonzero(row >= threshold)
        else:
            candidates = np.arange(n)
        order = np.lexsort((id_rank[candidates], -row[candidates]))
        out[i] = candidates[order[:k]]
    return out


def query_metrics(ranked_ids: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> list[dict[str, float]]:
    """recall@1/5/10, MRR@10 and NDCG@10 (binary gains) of each query's ranked corpus ids against its relevant set."""
    rows = []
    for ranked, rel in zip(ranked_ids, relevant):
        hits = [1 if cid in rel else 0 for cid in ranked]
        row = {f"recall@{k}": sum(hits[:k]) / len(rel) for k in RECALL_AT}
        row["mrr@10"] = next((1.0 / (i + 1) for i, h in enumerate(hits[:MRR_AT]) if h), 0.0)
        dcg = sum(h / np.log2(i + 2) for i, h in enumerate(hits[:NDCG_AT]))
        ideal = sum(1 / np.log2(i + 2) for i in range(min(len(rel), NDCG_AT)))
        row["ndcg@10"] = float(dcg / ideal)
        rows.append({name: float(row[name]) for name in METRIC_NAMES})
    return rows


def mean_metrics(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over per-query rows (what the aggregate metrics are)."""
    n = max(len(rows), 1)
    return {name: float(sum(row[name] for row in rows) / n) for name in METRIC_NAMES}


def ranking_metrics(ranked_ids: Sequence[Sequence[str]], relevant: Sequence[set[str]]) -> dict[str, float]:
    """recall@1/5/10, MRR@10 and NDCG@10 (binary gains) of ranked corpus ids against relevant sets, averaged."""
    return mean_metrics(query_metrics(ranked_ids, relevant))


@dataclass
class QueryScores:
    """Each measured query's metrics, in query order, and the size of the corpus they were ranked in."""

    ids: list[str]
    rows: list[dict[str, float]]
    corpus: int

    def metrics(self) -> dict[str, float]:
        """The aggregate metrics: per-query means, with the query and corpus counts."""
        return {**mean_metrics(self.rows), "queries": len(self.ids), "corpus": self.corpus}


def score_queries(model: Any, queries: Mapping[str, str], corpus: Mapping[str, str],
                  relevant: Mapping[str, set[str]], *, batch_size: int = 64,
                  query_prompt: str | None = None, passage_prompt: str | None = None,
                  swap_roles: bool = False, query_chunk: int = 1024) -> QueryScores:
    """Per-query retrieval metrics of a SentenceTransformer on (queries, corpus, relevant); pure, no files.

    Queries without a relevant document are skipped, as the sentence-transformers evaluator does.
    Queries are encoded with encode_query, the corpus with encode_document, so prompts default to the
    model's saved 'query'/'document' prompts; `swap_roles` (the reverse direction: definitions asking
    for terms) encodes the queries as documents and the corpus as queries.
    """
    qids = [q for q in queries if relevant.get(q)]
    if not qids or not corpus:
        raise PipeError("nothing to evaluate: no query has a relevant document in the corpus")
    cids = list(corpus)
    id_rank = np.empty(len(cids), dtype=np.int64)
    id_rank[np.argsort(np.array(cids, dtype=object), kind="stable")] = np.arange(len(cids))
    q_kind, c_kind = ("document", "query") if swap_roles else ("query", "document")
    prompts = {"query": query_prompt, "document": passage_prompt}
    q_emb = _encode(model, [queries[q] for q in qids], q_kind, prompts[q_kind], batch_size)
    c_emb = _encode(model, [corpus[c] for c in cids], c_kind, prompts[c_kind], batch_size)
    k = max(max(RECALL_AT), MRR_AT, NDCG_AT)
    ranked: list[list[str]] = []
    for start in range(0, len(qids), query_chunk):
        scores = model.similarity(q_emb[start:start + query_chunk], c_emb).float().cpu().numpy()
        for row in _top_k(scores, k, id_rank):
            ranked.append([cids[j] for j in row])
    return QueryScores(qids, query_metrics(ranked, [set(relevant[q]) for q in qids]), len(cids))


def evaluate_model(model: Any, queries: Mapping[str, str], corpus: Mapping[str, str],
                   relevant: Mapping[str, set[str]], *, batch_size: int = 64,
                   query_prompt: str | None = None, passage_prompt: str | None = None,
                   swap_roles: bool = False, query_chunk: int = 1024) -> dict[str, float]:
    """The aggregate metrics of score_queries (means over the measured queries, with the counts)."""
    return score_queries(model, queries, corpus, relevant, batch_size=batch_size, query_prompt=query_prompt,
                         passage_prompt=passage_prompt, swap_roles=swap_roles, query_chunk=query_chunk).metrics()


def score_task(model: Any, task: RetrievalTask, **kwargs: Any) -> QueryScores:
    """score_queries on a RetrievalTask (roles swapped for the reverse direction)."""
    return score_queries(model, task.queries, task.corpus, task.relevant, swap_roles=task.reverse, **kwargs)


def evaluate_task(model: Any, task: RetrievalTask, **kwargs: Any) -> dict[str, float]:
    """evaluate_model on a RetrievalTask (roles swapped for the reverse direction)."""
    return score_task(model, task, **kwargs).metrics()


def write_per_query(path: Path, scores: QueryScores) -> None:
    """One JSON line per measured query: its id and metrics."""
    with path.open("w", encoding="utf-8") as out:
        for qid, row in zip(scores.ids, scores.rows):
            out.write(json.dumps({"id": qid, **row}) + "\n")


def read_per_query(artifact: Artifact) -> dict[str, dict[str, float]] | None:
    """An eval artifact's per-query forward scores by query id; None when it has none (an older format)."""
    path = artifact.file(PER_QUERY_FILE)
    if not path.is_file():
        return None
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {str(row.pop("id")): {k: float(v) for k, v in row.items()} for row in rows}


# -- the eval stage --------------------------------------------------------------------------------

def _resolve_model_ref(store: Store, ref: str) -> tuple[str, Artifact | None]:
    """A model path and, when the ref is a train artifact, that artifact."""
    path = Path(ref)
    if "@" in ref or (path.is_dir() and (path / "manifest.json").is_file()):
        artifact = store.resolve(ref, stage="train")
        return str(artifact.file("model")), artifact
    if path.is_dir() and (path.parent / "manifest.json").is_file():  # data/train/<v>/model
        loaded = store.load(path.parent)
        if loaded is not None and loaded.stage == "train":
            return str(path), loaded
    return ref, None


def _base_model_of(artifact: Artifact | None) -> str | None:
    if artifact is None:
        return None
    return artifact.config.get("model")  # an id, a path, or a train@… ref (iterate --continue)


def pick_split(split: str, data_dir: Path, train_artifact: Artifact | None) -> str:
    """The split `auto` means (test when the data has test anchors, else dev), warning when dev cannot judge."""
    if split == "auto":
        test = data_dir / pairs_file("test")
        split = "test" if test.is_file() and test.stat().st_size > 0 else "dev"
        if split == "dev":
            info("no test split in this data: scoring the dev split (compose with --test-fraction 0.1 to hold "
                 "out an unbiased one)")
    if split == "dev" and train_artifact is not None and train_artifact.config.get("with_dev"):
        warn(f"{train_artifact.ref} was refit on the dev split (--with-dev): its dev scores are optimistic — "
             "score a test split or --eval-data instead")
    return split


def run_eval(store: Store, config: EvalConfig, model_ref_or_path: str, data_ref: str | None,
             compare_base: bool = False, force: bool = False) -> RunOutcome:
    """Score a model (and with `compare_base` its base model) on a held-out split; an eval artifact."""
    from pipe_embed.pipeline.core.encoders import load_encoder, store_export_root
    from pipe_embed.pipeline.core.models import (
        model_fingerprint,
        pick_device,
        quiet_libraries,
        resolve_model,
        resolve_model_ref,
    )

    model_path, train_artifact = _resolve_model_ref(store, model_ref_or_path)
    if data_ref is None:
        if train_artifact is None:
            raise PipeError("--data is required when --model is not a train artifact",
                            hint="e.g. --data compose@latest")
        data_artifact = _train_data_artifact(store, train_artifact)
    else:
        data_artifact = store.resolve(data_ref)
    data_dir = data_dir_for(store, data_artifact)
    base = _base_model_of(train_artifact) if compare_base else None
    if compare_base and base is None:
        raise PipeError(f"{model_ref_or_path}: --compare needs a train artifact (its manifest names the base model)",
                        hint="pass --model train@latest or a data/train/<version> directory")
    if base:
        base = resolve_model_ref(store, base)
    models = {"model": model_path, **({"base": base} if base else {})}
    extra = {"weights": {name: model_fingerprint(p) for name, p in models.items()}}
    inputs = [a for a in (train_artifact, data_artifact) if a is not None]
    directions = ["forward", "reverse"] if config.reverse else ["forward"]
    device = pick_device(config.device)

    split = pick_split(config.split, data_dir, train_artifact)

    def build(work: Path) -> StageResult:
        tasks = {d: retrieval_task(data_dir, split, reverse=(d == "reverse")) for d in directions}
        small = small_split_warning(split, measured_queries(tasks["forward"]))
        if small:
            warn_once(small)
        results: dict[str, dict[str, dict[str, float]]] = {}
        encoders: dict[str, str] = {}
        texts = [t for task in tasks.values() for t in (*task.queries.values(), *task.corpus.values())]
        for name, path in models.items():
            with quiet_libraries():  # the same fast encoder as mine, checked against torch on the first texts
                model, encoders[name], note = load_encoder(
                    resolve_model(path), config.backend, device, export_root=store_export_root(store.root),
                    sample=texts, texts_to_encode=len(texts), trust_remote_code=config.trust_remote_code)
            info(f"encoder ({name}): {note}")
            results[name] = {}
            for direction, task in tasks.items():
                info(f"evaluating {name} ({direction}, {split}: {len(task.queries)} queries, "
                     f"{len(task.corpus)} documents)")
                scored = score_task(model, task, batch_size=config.batch_size, query_prompt=config.query_prompt,
                                    passage_prompt=config.passage_prompt)
                results[name][direction] = scored.metrics()
                if name == "model" and direction == "forward":  # the same rows the metrics are the means of
                    write_per_query(work / PER_QUERY_FILE, scored)
        payload = {"split": split, "models": models, "data": data_artifact.ref, "results": results}
        (work / "metrics.json").write_text(finite_json(payload), encoding="utf-8")  # a non-finite number is null
        fwd = results["model"]["forward"]
        headline = {f"{split}_mrr@10": round(fwd["mrr@10"], 4),
                    f"{split}_recall@1": round(fwd["recall@1"], 4)}
        if "base" in results:
            headline["base_mrr@10"] = round(results["base"]["forward"]["mrr@10"], 4)
        return StageResult(metrics=results, headline=headline,
                           stats={"queries": int(fwd["queries"]), "corpus": int(fwd["corpus"]), "encoders": encoders})

    return store.run(stage=STAGE, format_version=FORMAT_VERSION,
                     config={**versioned_dict(config), "compare_base": bool(base)},
                     inputs=inputs, build=build, extra=extra, force=force)


def _train_data_artifact(store: Store, train_artifact: Artifact) -> Artifact:
    for item in train_artifact.inputs:
        found = store.get(item.get("stage", ""), item.get("version", ""))
        if found is not None:
            return found
    raise PipeError(f"{train_artifact.ref}: its data artifact is gone", hint="pass --data explicitly")


def metrics_tables(results: Mapping[str, Mapping[str, Mapping[str, float]]], split: str) -> list[Any]:
    """One rich Table per direction: a row per metric, columns base | trained | delta when comparing."""
    from rich.table import Table

    titles = {"forward": "term -> definition", "reverse": "definition -> term"}
    comparing = "base" in results
    tables = []
    for direction in results["model"]:
        table = Table(title=f"{titles.get(direction, direction)} retrieval, {split} split")
        table.add_column("metric")
        if comparing:
            for label in ("base", "trained", "Δ"):
                table.add_column(label, justify="right")
        else:
            table.add_column("model", justify="right")
        for metric in METRIC_NAMES:
            value = results["model"][direction][metric]
            if comparing:
                base = results["base"][direction][metric]
                table.add_row(metric, f"{base:.4f}", f"{value:.4f}", f"{value - base:+.4f}")
            else:
                table.add_row(metric, f"{value:.4f}")
        tables.append(table)
    return tables


def print_metrics(artifact: Artifact) -> None:
    """Print an eval artifact's table on stdout."""
    from rich.console import Console

    payload = json.loads(artifact.file("metrics.json").read_text(encoding="utf-8"))
    console = Console()
    for table in metrics_tables(payload["results"], payload["split"]):
        console.print(table)


__all__ = [
    "METRIC_NAMES",
    "MIN_QUERIES",
    "PER_QUERY_FILE",
    "QueryScores",
    "RetrievalTask",
    "data_dir_for",
    "evaluate_model",
    "evaluate_task",
    "mean_metrics",
    "measured_queries",
    "metrics_tables",
    "print_metrics",
    "query_metrics",
    "ranking_metrics",
    "read_per_query",
    "retrieval_task",
    "run_eval",
    "score_queries",
    "score_task",
    "small_split_warning",
    "warn_once",
    "write_per_query",
]
