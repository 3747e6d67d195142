"""Several eval sets during training (KURE's NanoBEIR-style average): data artifacts or BEIR directories.

`--eval-data` takes sets written `[NAME=]REF[#SPLIT]`: a data artifact (ref or directory; its dev
split unless `#test`) or a BEIR-layout directory (`corpus.jsonl` of `{_id, title, text}`,
`queries.jsonl` of `{_id, text}`, `qrels/<split>.tsv` of `query-id corpus-id score`; dev.tsv,
else test.tsv, else the only one). Each set is scored by sentence-transformers' IR evaluator under
its own name, next to the training data's own dev split (named `dev`), and the mean of every
metric over the sets (`mean_<similarity>_<metric>`) picks the best checkpoint and drives early
stopping.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from pipe_embed.pipeline.core.console import info
from pipe_embed.pipeline.core.errors import ConfigError, InputError
from pipe_embed.pipeline.core.hashing import hash_file
from pipe_embed.pipeline.core.store import Store
from pipe_embed.training.evaluate import METRIC_NAMES, RetrievalTask, data_dir_for, evaluate_task, retrieval_task

MEAN = "mean"
DEV = "dev"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class EvalSpec:
    """One `--eval-data` entry: an optional name, the ref or directory, an optional split."""

    name: str | None
    ref: str
    split: str | None


@dataclass
class EvalSet:
    """A named retrieval task scored during training, and what identifies its data."""

    name: str
    task: RetrievalTask
    source: str
    fingerprint: dict[str, Any]


def parse_spec(text: str) -> EvalSpec:
    """`[NAME=]REF[#SPLIT]` -> EvalSpec; a bad name is refused naming the field."""
    text = text.strip()
    name = None
    head, sep, tail = text.partition("=")
    if sep and _NAME.match(head) and "/" not in head:
        name, text = head, tail
    ref, _, split = text.partition("#")
    if not ref:
        raise ConfigError(f"field 'eval_data': {text!r} names no data", hint="write [NAME=]REF[#SPLIT]")
    if name is not None and name in (MEAN,):
        raise ConfigError(f"field 'eval_data': the name {name!r} is reserved for the average", hint="pick another name")
    if split and split not in ("dev", "test", "train"):
        raise ConfigError(f"field 'eval_data': split {split!r} of {ref} is not dev, test or train")
    return EvalSpec(name, ref, split or None)


def check_specs(values: Sequence[str]) -> None:
    """Refuse malformed `eval_data` entries early (before any data is read)."""
    for value in values:
        parse_spec(value)


def is_beir_dir(path: Path) -> bool:
    """A BEIR-layout directory: corpus.jsonl, queries.jsonl and a qrels/ folder of TSV files."""
    return (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file() and (path / "qrels").is_dir()


def _qrels_file(path: Path, split: str | None) -> Path:
    files = sorted((path / "qrels").glob("*.tsv"))
    if split:
        chosen = path / "qrels" / f"{split}.tsv"
        if not chosen.is_file():
            raise InputError(chosen, "no such qrels file", hint=f"have: {', '.join(f.name for f in files) or 'none'}")
        return chosen
    for name in ("dev.tsv", "test.tsv"):
        if (path / "qrels" / name).is_file():
            return path / "qrels" / name
    if len(files) == 1:
        return files[0]
    raise InputError(path / "qrels", "no dev.tsv or test.tsv, and not exactly one TSV file to take",
                     hint="name the split: DIR#SPLIT")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"not valid JSON ({exc.msg})", line=number) from None
            if not isinstance(row, dict) or ("_id" not in row and "id" not in row):
                raise InputError(path, "expected an object with an '_id'", line=number)
            rows.append(row)
    return rows


def read_beir(path: Path, split: str | None = None) -> tuple[RetrievalTask, Path]:
    """The retrieval task of a BEIR-layout directory, and the qrels file it used."""
    qrels_path = _qrels_file(path, split)
    corpus = {}
    for row in _read_jsonl(path / "corpus.jsonl"):
        text = " ".join(p for p in (str(row.get("title") or "").strip(), str(row.get("text") or "").strip()) if p)
        corpus[str(row.get("_id", row.get("id")))] = text
    queries = {str(row.get("_id", row.get("id"))): str(row.get("text") or "")
               for row in _read_jsonl(path / "queries.jsonl")}
    relevant: dict[str, set[str]] = {}
    with open(qrels_path, encoding="utf-8", newline="") as fh:
        for number, cells in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not cells or not "".join(cells).strip():
                continue
            if len(cells) < 2:
                raise InputError(qrels_path, "expected query-id, corpus-id and score", line=number)
            score = cells[2] if len(cells) > 2 else "1"
            try:
                value = float(score)
            except ValueError:
                if number == 1:
                    continue  # the header: query-id corpus-id score
                raise InputError(qrels_path, f"score {score!r} is not a number", line=number) from None
            if value > 0 and cells[0] in queries and cells[1] in corpus:
                relevant.setdefault(cells[0], set()).add(cells[1])
    if not relevant:
        raise InputError(qrels_path, "no judged query whose document is in the corpus",
                         hint="check the ids against corpus.jsonl and queries.jsonl")
    return RetrievalTask({q: t for q, t in queries.items() if q in relevant}, corpus, relevant), qrels_path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text).strip("_") or "set"


def _beir_fingerprint(path: Path, qrels: Path) -> dict[str, Any]:
    return {"beir": {"corpus": hash_file(path / "corpus.jsonl"), "queries": hash_file(path / "queries.jsonl"),
                     "qrels": hash_file(qrels)}}


def _as_beir_dir(spec: EvalSpec) -> Path | None:
    """The spec's directory when it is a BEIR directory (not an artifact), else None; a stray directory fails."""
    path = Path(spec.ref).expanduser()
    if not path.is_dir() or (path / "manifest.json").is_file():
        return None
    if not is_beir_dir(path):
        raise InputError(path, "neither a data artifact nor a BEIR directory",
                         hint="a BEIR directory holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    return path


def spec_fingerprint(store: Store, value: str) -> dict[str, Any]:
    """What identifies one `eval_data` entry's data, without reading it: an artifact version or file hashes."""
    spec = parse_spec(value)
    path = _as_beir_dir(spec)
    if path is not None:
        return _beir_fingerprint(path, _qrels_file(path, spec.split))
    artifact = store.resolve(spec.ref)
    return {"artifact": {"stage": artifact.stage, "version": artifact.version, "split": spec.split or "dev"}}


def _load_one(store: Store, spec: EvalSpec) -> EvalSet:
    path = _as_beir_dir(spec)
    if path is not None:
        task, qrels = read_beir(path, spec.split)
        return EvalSet(spec.name or _safe_name(path.resolve().name), task, str(path), _beir_fingerprint(path, qrels))
    artifact = store.resolve(spec.ref)
    split = spec.split or "dev"
    task = retrieval_task(data_dir_for(store, artifact), split)
    if not task.relevant:
        raise InputError(artifact.ref, f"its {split} split has no query with a relevant document")
    name = spec.name or f"{artifact.stage}-{artifact.version[:8]}"
    return EvalSet(name, task, f"{artifact.ref}#{split}",
                   {"artifact": {"stage": artifact.stage, "version": artifact.version, "split": split}})


def load_eval_sets(store: Store, values: Sequence[str], dev: RetrievalTask | None = None,
                   with_dev: bool = True) -> list[EvalSet]:
    """The eval sets of `values` (none: an empty list), the training data's dev split first when kept."""
    if not values:
        return []
    sets = [EvalSet(DEV, dev, "dev split", {"dev": True})] if dev is not None and with_dev else []
    for value in values:
        loaded = _load_one(store, parse_spec(value))
        taken = {s.name for s in sets}
        if loaded.name in taken:
            if parse_spec(value).name:
                raise ConfigError(f"field 'eval_data': two eval sets are named {loaded.name!r}",
                                  hint="give each its own NAME=")
            base, n = loaded.name, 2
            while f"{base}-{n}" in taken:
                n += 1
            loaded.name = f"{base}-{n}"
        sets.append(loaded)
    names = ", ".join(f"{s.name} ({len(s.task.relevant)} queries)" for s in sets)
    info(f"eval sets: {names}; their mean picks the best checkpoint")
    return sets


def fingerprints(sets: Sequence[EvalSet]) -> list[dict[str, Any]]:
    """What identifies the sets' data (artifact versions, file hashes): for the train version."""
    return [s.fingerprint for s in sets]


# -- during training -------------------------------------------------------------------------------

def mean_metric_key(similarity: str, metric: str) -> str:
    """The trainer's name for the mean over the eval sets of one metric."""
    return f"eval_{MEAN}_{similarity}_{metric}"


def sets_evaluator(sets: Sequence[EvalSet], batch_size: int) -> Any:
    """One evaluator over every set: each set's IR metrics under its name, plus their mean under `mean_`."""
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    evaluators = [InformationRetrievalEvaluator(  # texts as Any: the evaluator's dict[str, SingleInput] is invariant
        cast("dict[str, Any]", s.task.queries), cast("dict[str, Any]", s.task.corpus), s.task.relevant,
        name=s.name, mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 5, 10], precision_recall_at_k=[1, 5, 10],
        map_at_k=[100], batch_size=batch_size, write_csv=False, show_progress_bar=False) for s in sets]

    class MeanOfSets(BaseEvaluator):
        """Every set's metrics, and their unweighted mean (each set counts once, whatever its size)."""

        def __call__(self, model: Any, output_path: str | None = None, epoch: int = -1,
                     steps: int = -1) -> dict[str, float]:
            results: dict[str, float] = {}
            per_set = []
            for evaluator in evaluators:
                metrics = evaluator(model, output_path, epoch, steps)
                results.update(metrics)
                per_set.append({k[len(evaluator.name) + 1:]: v for k, v in metrics.items()})
            for key in sorted(set.intersection(*(set(m) for m in per_set))):
                results[f"{MEAN}_{key}"] = float(np.mean([m[key] for m in per_set]))
            first = evaluators[0]
            assert first.primary_metric is not None  # every call of the IR evaluator sets it
            self.primary_metric = f"{MEAN}_{first.primary_metric[len(first.name) + 1:]}"
            return results

    return MeanOfSets()


def set_metrics(entry: dict[str, Any], sets: Sequence[EvalSet], similarity: str) -> dict[str, dict[str, float]] | None:
    """Per-set and mean metrics (recall@k, mrr@10, ndcg@10) from one logged evaluation, or None if incomplete."""
    out: dict[str, dict[str, float]] = {}
    for name in [s.name for s in sets] + [MEAN]:
        prefix = f"eval_{name}_{similarity}_"
        values = {m: float(entry[prefix + m]) for m in METRIC_NAMES if prefix + m in entry}
        if len(values) != len(METRIC_NAMES):
            return None
        out[name] = values
    return out


def final_set_metrics(entries: list[dict[str, Any]], step: int | None, sets: Sequence[EvalSet], model: Any,
                      batch_size: int = 64) -> dict[str, dict[str, float]]:
    """The kept model's metrics on every set: as logged at its checkpoint, else scored now."""
    similarity = model.similarity_fn_name
    for entry in reversed(entries):
        if entry.get("kind") == "eval" and entry.get("step") == step:
            found = set_metrics(entry, sets, similarity)
            if found is not None:
                return found
    out = {s.name: {m: float(evaluate_task(model, s.task, batch_size=batch_size)[m]) for m in METRIC_NAMES}
           for s in sets}
    out[MEAN] = {m: float(np.mean([out[s.name][m] for s in sets])) for m in METRIC_NAMES}
    return out


__all__ = [
    "EvalSet",
    "EvalSpec",
    "MEAN",
    "check_specs",
    "final_set_metrics",
    "fingerprints",
    "is_beir_dir",
    "load_eval_sets",
    "mean_metric_key",
    "parse_spec",
    "read_beir",
    "set_metrics",
    "sets_evaluator",
    "spec_fingerprint",
]
