"""Exact flat search: `faiss.knn` on 4,096-query chunks (dense mining until now) against mining.search.

Data: seeded random unit vectors, WordNet-sized: 20k queries x 20k corpus and 100k x 100k, dim 384,
k 30. Both paths run in this process on the same arrays, alternating (faiss, ours, ours, faiss, ...),
`--repeats` times each; every run records wall and CPU seconds and the load average before it. Reported
per size: medians, the ratio of medians (faiss / ours, wall and CPU), and agreement with faiss: whether
the neighbour lists are identical, how many rows differ in order or in set, the largest score difference
and the share of bit-equal scores.

`--diagnose` (at the first size) adds what explains the gap: faiss.knn with 1 and with 2 OpenMP threads
(and how its answers differ between the two), torch.mm + topk on the same chunks, and, in child
processes, one single-threaded faiss.knn call (1,024 x 20,000) under OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
values: the core faiss's OpenBLAS picked and its GFLOP/s, with numpy's and torch's products beside it.

    python benchmarks/bench_search.py [--sizes 20000x20000,100000x100000] [--repeats 3] [--diagnose]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipe_embed.mining import search  # noqa: E402
from pipe_embed.mining.candidates import Candidates, sort_rows  # noqa: E402
from pipe_embed.pipeline.core.console import set_verbosity  # noqa: E402

DIM, K, CHUNK = 384, 30, 4096
ENV_VARIANTS = [{}, {"OPENBLAS_CORETYPE": "Haswell"}, {"OPENBLAS_CORETYPE": "Zen"},
                {"OPENBLAS_CORETYPE": "SkylakeX"}, {"OPENBLAS_CORETYPE": "Cooperlake"},
                {"OPENBLAS_CORETYPE": "Prescott"}, {"OPENBLAS_L2_SIZE": "32768"}]
BLAS_CHILD = """
import json, time, numpy as np, faiss, torch
from threadpoolctl import threadpool_info, threadpool_limits
faiss.omp_set_num_threads(1); torch.set_num_threads(1)
rng = np.random.default_rng(0)
q = rng.standard_normal((1024, 384), dtype=np.float32); x = rng.standard_normal((20000, 384), dtype=np.float32)
def best(f):
    times = []
    for _ in range(3):
        start = time.process_time(); f(); times.append(time.process_time() - start)
    return min(times)
flop = 2 * 1024 * 20000 * 384 / 1e9
tq, tx = torch.from_numpy(q), torch.from_numpy(x)
with threadpool_limits(1, user_api="blas"):
    out = {"faiss_knn_gflops": flop / best(lambda: faiss.knn(q, x, 30, metric=faiss.METRIC_INNER_PRODUCT)),
           "numpy_matmul_gflops": flop / best(lambda: q @ x.T), "torch_mm_gflops": flop / best(lambda: tq @ tx.T)}
out = {key: round(value, 1) for key, value in out.items()}
out["cores"] = {i["filepath"].split("/")[-1]: i.get("architecture") for i in threadpool_info() if i["user_api"] == "blas"}
print(json.dumps(out))
"""


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def uptime() -> str:
    """`uptime`'s line (load included), or the load averages where it is missing."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"load average: {load()}"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def unit_vectors(n: int, seed: int) -> np.ndarray:
    """n seeded random unit vectors of DIM float32."""
    x = np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def faiss_chunks(queries: np.ndarray, corpus: np.ndarray, k: int = K) -> Candidates:
    """The former dense-mining path: `faiss.knn` on each 4,096-query chunk, rows ordered as pipe orders them."""
    import faiss

    scores = np.empty((len(queries), k), dtype=np.float32)
    ids = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), CHUNK):
        scores[start:start + CHUNK], ids[start:start + CHUNK] = faiss.knn(
            queries[start:start + CHUNK], corpus, k, metric=faiss.METRIC_INNER_PRODUCT)
    return sort_rows(ids, scores)


def ours(queries: np.ndarray, corpus: np.ndarray, k: int = K) -> Candidates:
    """mining.search, as dense mining now runs it."""
    return search.exact_search(queries, corpus, k, batch_size=CHUNK)


def torch_topk(queries: np.ndarray, corpus: np.ndarray, k: int = K) -> Candidates:
    """torch.mm + topk on the same chunks (torch's own threads): a reference, not an exact-tie path."""
    import torch

    tc = torch.from_numpy(corpus)
    parts = [torch.topk(torch.from_numpy(queries[s:s + CHUNK]) @ tc.T, k, dim=1) for s in range(0, len(queries), CHUNK)]
    return sort_rows(np.concatenate([p.indices.numpy() for p in parts]),
                     np.concatenate([p.values.numpy() for p in parts]))


def timed(fn: Callable[[], Candidates]) -> tuple[Candidates, dict]:
    """Run fn once: its answer, and wall/CPU seconds with the load before."""
    before = load()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3),
                 "load_before": before}


def agreement(got: Candidates, want: Candidates) -> dict:
    """How far got is from want: identical ids?, rows differing in order / in set, score differences."""
    order = (got.ids != want.ids).any(axis=1)
    sets = (np.sort(got.ids, axis=1) != np.sort(want.ids, axis=1)).any(axis=1)
    return {"identical_neighbours": bool(not order.any()), "rows": len(got.ids),
            "rows_differing_in_order": int(order.sum()), "rows_differing_in_set": int(sets.sum()),
            "max_abs_score_diff": float(np.abs(got.scores - want.scores).max()),
            "bit_equal_score_share": round(float((got.scores == want.scores).mean()), 4)}


def medians(runs: list[dict]) -> dict:
    """Median wall and CPU seconds of runs."""
    return {"wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
            "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3)}


def compare(n_queries: int, n_corpus: int, repeats: int) -> dict:
    """faiss chunks vs ours on one size, alternating, with agreement on every pair of runs."""
    queries, corpus = unit_vectors(n_queries, 1), unit_vectors(n_corpus, 2)
    runs: dict[str, list[dict]] = {"faiss": [], "ours": []}
    checks = []
    for rep in range(repeats):
        order = ["faiss", "ours"] if rep % 2 == 0 else ["ours", "faiss"]
        answers = {}
        for name in order:
            answers[name], run = timed(lambda name=name: (faiss_chunks if name == "faiss" else ours)(queries, corpus))
            runs[name].append(run)
            print(f"{n_queries}x{n_corpus} {name}: {run['wall_s']:.2f}s wall, {run['cpu_s']:.2f}s CPU "
                  f"(load {run['load_before'][0]})", file=sys.stderr, flush=True)
        checks.append(agreement(answers["ours"], answers["faiss"]))
    med = {name: medians(r) for name, r in runs.items()}
    return {"queries": n_queries, "corpus": n_corpus, "dim": DIM, "k": K, "runs": runs, "median": med,
            "ratio_faiss_over_ours": {"wall": round(med["faiss"]["wall_s"] / med["ours"]["wall_s"], 2),
                                      "cpu": round(med["faiss"]["cpu_s"] / med["ours"]["cpu_s"], 2)},
            "agreement_with_faiss": checks[-1],
            "identical_neighbours_every_run": all(c["identical_neighbours"] for c in checks)}


def threads_and_torch(n_queries: int, n_corpus: int, repeats: int) -> dict:
    """faiss.knn chunks with 1 and 2 OpenMP threads and torch.mm + topk, alternating; answers compared."""
    import faiss

    queries, corpus = unit_vectors(n_queries, 1), unit_vectors(n_corpus, 2)
    before = faiss.omp_get_max_threads()

    def faiss_with(threads: int) -> Candidates:
        faiss.omp_set_num_threads(threads)
        try:
            return faiss_chunks(queries, corpus)
        finally:
            faiss.omp_set_num_threads(before)

    paths = {"faiss_2_threads": lambda: faiss_with(2), "faiss_1_thread": lambda: faiss_with(1),
             "torch_mm_topk": lambda: torch_topk(queries, corpus)}
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    answers: dict[str, Candidates] = {}
    for _ in range(repeats):
        for name, fn in paths.items():
            answers[name], run = timed(fn)
            runs[name].append(run)
            print(f"diagnose {name}: {run['wall_s']:.2f}s wall, {run['cpu_s']:.2f}s CPU", file=sys.stderr, flush=True)
    return {"queries": n_queries, "corpus": n_corpus, "runs": runs,
            "median": {name: medians(r) for name, r in runs.items()},
            "faiss_1_thread_vs_2_threads": agreement(answers["faiss_1_thread"], answers["faiss_2_threads"]),
            "torch_vs_faiss_2_threads": agreement(answers["torch_mm_topk"], answers["faiss_2_threads"])}


def blas_env() -> list[dict]:
    """One single-threaded faiss.knn call (and numpy, torch products) per OPENBLAS_* setting, in child processes."""
    out = []
    for extra in ENV_VARIANTS:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        env.update(extra)
        done = subprocess.run([sys.executable, "-c", BLAS_CHILD], env=env, capture_output=True, text=True)
        row = {"env": extra or "unset", "load_before": load()}
        row.update(json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr.strip()[-300:]})
        print(f"diagnose env {extra or 'unset'}: {row}", file=sys.stderr, flush=True)
        out.append(row)
    return out


def machine() -> dict:
    """CPU, threads, BLAS libraries, faiss's exact-search settings and the OpenBLAS variables as found."""
    import faiss
    import torch
    from threadpoolctl import threadpool_info

    return {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "faiss": faiss.__version__, "numpy": np.__version__, "torch": torch.__version__,
            "faiss_omp_threads": faiss.omp_get_max_threads(), "torch_threads": torch.get_num_threads(),
            "search_threads": search.search_threads(), "query_tile": search.QUERY_TILE,
            "faiss_settings": {name: int(getattr(faiss.cvar, name)) for name in (
                "distance_compute_blas_threshold", "distance_compute_blas_query_bs",
                "distance_compute_blas_database_bs", "distance_compute_min_k_reservoir")},
            "blas": [{key: i.get(key) for key in ("filepath", "internal_api", "version", "architecture",
                                                  "threading_layer", "num_threads")}
                     for i in threadpool_info() if i["user_api"] == "blas"],
            "env": {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                            "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000x20000,100000x100000", help="QUERIESxCORPUS, comma separated")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path per size, alternating")
    parser.add_argument("--diagnose", action="store_true", help="threads, torch and OPENBLAS_* effects too")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search.json")
    args = parser.parse_args()
    set_verbosity(-1)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    result: dict = {"benchmark": "search", "command": "python " + " ".join(sys.argv), "machine": machine(),
                    "uptime_start": uptime(), "sizes": []}
    for n_queries, n_corpus in sizes:
        result["sizes"].append(compare(n_queries, n_corpus, args.repeats))
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # what is done so far survives a kill
    if args.diagnose:
        result["diagnose"] = {"threads_and_torch": threads_and_torch(*sizes[0], args.repeats), "blas_env": blas_env()}
    result["uptime_end"] = uptime()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"sizes": [{key: s[key] for key in ("queries", "corpus", "median", "ratio_faiss_over_ours",
                                                         "identical_neighbours_every_run")} for s in result["sizes"]],
                      "uptime": [result["uptime_start"], result["uptime_end"]]}, indent=2))


if __name__ == "__main__":
    main()
