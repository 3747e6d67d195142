"""Dense mining against sentence-transformers' `mine_hard_negatives`, encode speed per backend, the cache, memory.

Part `compare` (20k WordNet synsets: first lemma -> gloss, lemmas and glosses unique, seeded sample)
and part `chess` (the main job's data: the bundled Glossary of chess, crawled --dry-run and composed
with data/sample/pipe.toml): the mine stage (`run_mine`, method faiss, backend auto) and
`sentence_transformers.util.mine_hard_negatives` (use_faiss=True, output_format="triplet", the same
candidate corpus) with equal settings: range_max 30, 3 negatives, relative margin 0.05, top sampling,
batch size 64. The peer gets an already-loaded, warmed-up torch all-MiniLM-L6-v2 (load excluded); the
mine stage's time includes everything it does from a cold store: loading the model, exporting it for
the fast backend, the cosine check, and every vector encoded (a fresh store per run: its embedding
cache and export cache start empty, nothing is reused from earlier runs; each run records its cache
hits, 0). The machine is shared, so the two sides alternate (ours, peer, peer, ours, ...), every run
records the load average and so does the part at its start and end; the ratio is taken from the
medians. Also reported: agreement of the chosen negatives per anchor (Jaccard), a mine-stage rerun
(--force) that finds every vector in the embedding cache, and (`encode`) the throughput and min
cosine to torch of each backend on the part's own texts (its first 2,000 lemmas and 500 glosses).

Part `throughput`: texts/s of each backend (torch; openvino = OpenVINO in the CPU's native precision,
bf16 on AMX, when it passes the cosine check, else f32; openvino-f32; onnx = ONNX Runtime f32) on
2,000 WordNet lemmas and 500 glosses, backends alternating round by round, the export time, and the
smallest cosine to torch's vectors over all of them; each entry is named by what ran (openvino-bf16).

Part `rss` (200k candidate texts, 200k anchors): peak RSS of the mine stage in a child process with
the embedding cache filled beforehand with random unit vectors under the bundled model's weight
hash, so the stage runs its real path (cache lookup, FAISS flat search in chunks, selection,
writing, diagnostics) but never loads the model: "model excluded". Imports (torch, faiss, …) count.

    python benchmarks/bench_dense.py [--part compare|chess|throughput|rss|all] [--pairs 20000] [--repeats 2]
                                     [--rounds 3] [--backends torch,openvino,openvino-f32,onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.child import run_child  # noqa: E402
from benchmarks.wordnet_pairs import distinct_gloss_rows, synset_rows, write_compose  # noqa: E402
from pipe_embed.pipeline.core.console import set_verbosity  # noqa: E402
from pipe_embed.pipeline.core.pairs import CORPUS_FILE, pairs_file, read_corpus, read_pairs  # noqa: E402
from pipe_embed.pipeline.core.store import Artifact, Store  # noqa: E402

SETTINGS = {"range_max": 30, "num_negatives": 3, "relative_margin": 0.05, "batch_size": 64}
PROGRESS: Path | None = None  # where mine_vs_peer writes its runs as they finish


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "sentence-transformers", "openvino", "onnxruntime", "onnx", "faiss-cpu"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def agreement(rows: list[dict], peer: list[dict]) -> dict:
    """Per-anchor Jaccard of our negatives and the peer's (anchors where both have none are counted apart)."""
    peer_negs: dict[str, set[str]] = {}
    for item in peer:
        peer_negs.setdefault(item["anchor"], set()).add(item["negative"])
    jaccard, share, both_empty = [], [], 0
    for r in rows:
        mine, theirs = set(r["hard_negatives"]), peer_negs.get(r["anchor"], set())
        if not mine and not theirs:
            both_empty += 1
            continue
        jaccard.append(len(mine & theirs) / len(mine | theirs))
        if mine:
            share.append(len(mine & theirs) / len(mine))
    return {"anchors": len(rows), "anchors_both_without_negatives": both_empty,
            "mean_jaccard": round(float(np.mean(jaccard)), 4) if jaccard else None,
            "anchors_not_identical": int(sum(1 for j in jaccard if j < 1.0)),
            "share_of_our_negatives_also_chosen_by_peer": round(float(np.mean(share)), 4) if share else None,
            "peer_negatives": len(peer), "peer_anchors_with_3_negatives": sum(1 for v in peer_negs.values() if len(v) >= 3)}


def mine_vs_peer(compose_of, anchors: list[str], positives: list[str], corpus: list[str] | None,
                 repeats: int, mine_settings: dict, precision: str = "auto") -> dict:
    """Alternate the mine stage (fresh store each time) and mine_hard_negatives; medians, loads, agreement."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from pipe_embed.mining.dense import Encoder
    from pipe_embed.mining.stage import MineConfig, cache_root, run_mine
    from pipe_embed.pipeline.core.models import load_model

    model = load_model(None)
    model.encode([f"warm-up sentence number {i}" for i in range(64)], batch_size=64)  # first-call costs
    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
    config = MineConfig(method="faiss", **mine_settings)
    distinct = len(set(anchors) | set(positives) | set(corpus or ()))  # what a cold run must encode
    runs: list[dict] = []
    first_rows = first_stats = peer_result = None
    order = [side for _ in range((repeats + 1) // 2) for side in ("ours", "peer", "peer", "ours")][: 2 * repeats]
    for side in order:
        before = load()
        with tempfile.TemporaryDirectory() as tmp:
            if side == "ours":
                store = Store(Path(tmp) / "data")
                compose = compose_of(store)
                start = time.perf_counter()
                encoder = Encoder(config.model, backend=config.backend, batch_size=config.batch_size,
                                  cache_root=cache_root(store), precision=precision)
                art = run_mine(store, config, compose, encoder=encoder).artifact
                wall = time.perf_counter() - start
                # a fresh store: the cache starts empty. Its hits are texts met twice within the run (a positive
                # is also a candidate), never vectors from an earlier run: every distinct text is encoded.
                run = {"side": "mine stage", "wall_s": round(wall, 2), "backend": encoder.backend_name,
                       "note": encoder.note, "seconds": art.stats["seconds"], "encoded_texts": art.stats["encoded_texts"],
                       "distinct_texts": distinct, "cache_hits_within_run": art.stats["cache_hits"]}
                assert art.stats["encoded_texts"] == distinct, "the mine stage must start from a cold embedding cache"
                if first_rows is None:
                    first_rows, first_stats = read_pairs(art.file("pairs.jsonl")), art.stats
                    start = time.perf_counter()
                    again = Encoder(config.model, backend=config.backend, batch_size=config.batch_size,
                                    cache_root=cache_root(store), precision=precision)
                    rerun = run_mine(store, config, compose, force=True, encoder=again).artifact
                    run["cached_rerun_s"] = round(time.perf_counter() - start, 2)
                    run["cached_rerun_encoded_texts"] = rerun.stats["encoded_texts"]
            else:
                start = time.perf_counter()
                peer = mine_hard_negatives(dataset, model, corpus=corpus, range_max=mine_settings["range_max"],
                                           num_negatives=mine_settings["num_negatives"],
                                           relative_margin=mine_settings["relative_margin"], sampling_strategy="top",
                                           batch_size=mine_settings["batch_size"], use_faiss=True,
                                           output_format="triplet", verbose=False)
                wall = time.perf_counter() - start
                run = {"side": "mine_hard_negatives", "wall_s": round(wall, 2)}
                peer_result = peer_result if peer_result is not None else list(peer)
        run["load_before"], run["load_after"] = before, load()
        print(f"{run['side']}: {run['wall_s']:.1f}s (load {before[0]} -> {run['load_after'][0]})"
              + (f", {run['backend']}" if side == "ours" else ""), file=sys.stderr)
        runs.append(run)
        if PROGRESS is not None:  # a long run on a shared machine: keep what is measured so far
            PROGRESS.write_text(json.dumps(runs, indent=2) + "\n")
    ours = [r["wall_s"] for r in runs if r["side"] == "mine stage"]
    theirs = [r["wall_s"] for r in runs if r["side"] == "mine_hard_negatives"]
    pairs_ratio = [round(o / t, 3) for o, t in zip(ours, theirs)]
    assert first_rows is not None and first_stats is not None and peer_result is not None
    first = next(r for r in runs if r["side"] == "mine stage")
    return {
        "runs": runs,
        "mine_stage_s_median": round(statistics.median(ours), 2),
        "mine_hard_negatives_s_median": round(statistics.median(theirs), 2),
        "wall_time_ratio": round(statistics.median(ours) / statistics.median(theirs), 3),
        "wall_time_ratio_per_pair": pairs_ratio,
        "backend": first["backend"], "backend_note": first["note"],
        "embedding_cache": ("cold: every mine-stage run uses a fresh store (empty embedding and export caches), "
                            f"texts encoded {[r['encoded_texts'] for r in runs if r['side'] == 'mine stage']} of {distinct} distinct; only "
                            "cached_rerun_s reuses the vectors of the run before it"),
        "mine_stage_seconds": first["seconds"],
        "cached_rerun_s": first["cached_rerun_s"],
        "cached_rerun_encoded_texts": first["cached_rerun_encoded_texts"],
        "cached_rerun_ratio": round(first["cached_rerun_s"] / first["wall_s"], 4),
        "agreement": agreement(first_rows, peer_result),
        "negatives": {"mine_stage": first_stats["negatives"], "anchors_short_mine_stage": first_stats["short_of_negatives"],
                      "dropped_mine_stage": first_stats["dropped"]},
    }


def compare(pairs: int, repeats: int, rounds: int, backends: list[str], precision: str = "auto") -> dict:
    """The mine stage vs mine_hard_negatives on `pairs` WordNet pairs (candidates: their glosses), and each
    backend's encode throughput and min cosine to torch on those texts; load average at start and end."""
    load_start = load()
    rows = synset_rows(pairs)
    anchors, positives = [r["anchor"] for r in rows], [r["positive"] for r in rows]
    encode = throughput(rounds, backends, {"lemmas": anchors[:2000], "glosses": positives[:500]})
    out = mine_vs_peer(lambda store: write_compose(store, rows, "bench_dense"), anchors, positives, None, repeats,
                       SETTINGS, precision)
    return {"pairs": len(rows), "settings": SETTINGS, "mine_precision": precision, "load_start": load_start, **out,
            "encode": encode, "load_end": load()}


def chess_compose(data: Path) -> Artifact:
    """Crawl (--dry-run: the bundled page) and compose the main job's chess glossary with its config."""
    pipe = Path(sys.executable).with_name("pipe")
    env = {**os.environ, "PIPE_DATA_DIR": str(data)}
    config = ROOT / "data" / "sample" / "pipe.toml"
    for args in (["crawl", "--sources", "wikipedia_glossary", "--dry-run"],
                 ["compose", "--from", "crawl@latest", "--config", str(config)]):
        subprocess.run([str(pipe), *args, "-q", "--data-dir", str(data)], check=True, env=env, cwd=ROOT)
    return Store(data).resolve("compose@latest")


def chess(repeats: int) -> dict:
    """The mine stage vs mine_hard_negatives on the main job's chess train split and corpus."""
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        source = chess_compose(Path(tmp) / "data")
        rows = read_pairs(source.file(pairs_file("train")))
        corpus = [r["text"] for r in read_corpus(source.file(CORPUS_FILE))]

        def compose_of(store: Store) -> Artifact:
            target = store.root / "compose" / source.version
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source.path, target)
            return store.resolve(f"compose@{source.version}")

        out = mine_vs_peer(compose_of, [r["anchor"] for r in rows], [r["positive"] for r in rows], corpus,
                           repeats, SETTINGS)
    return {"anchors": len(rows), "corpus_texts": len(corpus), "settings": SETTINGS,
            "note": "anchors with several definitions: the peer sees their first one as the positive, we exclude all",
            **out}


def throughput(rounds: int, backends: list[str], sets: dict[str, list[str]] | None = None) -> dict:
    """Encode speed of each backend on short lemmas and long glosses, alternating; min cosine to torch.

    A backend is `torch`, `openvino` (native precision if it passes the check, else f32), `openvino-f32`
    or `onnx`; its entry is named by what ran (`openvino-bf16`), so a duplicate is timed once.
    """
    from pipe_embed.pipeline.core.encoders import backend_installed, load_encoder, min_cosine

    if sets is None:
        rows = synset_rows(2000, seed=1)
        sets = {"lemmas": [r["anchor"] for r in rows], "glosses": [r["positive"] for r in rows][:500]}
    usable = [b for b in backends if b == "torch" or backend_installed(b.split("-")[0])]
    missing = [b for b in backends if b not in usable]
    models, out = {}, {"texts": {k: len(v) for k, v in sets.items()}, "batch_size": 64, "rounds": rounds,
                       "not_installed": missing, "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in ["torch", *[b for b in usable if b != "torch"]]:  # torch first: the reference
            backend, _, precision = spec.partition("-")
            start = time.perf_counter()
            model, name, note = load_encoder(None, backend, export_root=Path(tmp) / "exports",
                                             precision=precision or "auto", sample=sets["lemmas"])
            if name in models:
                continue
            models[name] = model
            out["backends"][name] = {"asked": spec, "load_and_export_s": round(time.perf_counter() - start, 2),
                                     "note": note, "texts_per_s": {k: [] for k in sets}, "load": []}
            model.encode(sets["lemmas"][:64], batch_size=64)  # warm-up
        vectors: dict[str, dict[str, np.ndarray]] = {b: {} for b in models}
        for _ in range(rounds):
            for name, model in models.items():
                entry = out["backends"][name]
                entry["load"].append(load()[0])
                for kind, texts in sets.items():
                    start = time.perf_counter()
                    vecs = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
                    entry["texts_per_s"][kind].append(round(len(texts) / (time.perf_counter() - start), 1))
                    vectors[name][kind] = np.asarray(vecs, dtype=np.float32)
    for name in models:
        entry = out["backends"][name]
        entry["median_texts_per_s"] = {k: statistics.median(v) for k, v in entry["texts_per_s"].items()}
        if name != "torch":
            entry["min_cosine_to_torch"] = round(min(min_cosine(vectors["torch"][k], vectors[name][k]) for k in sets), 7)
            entry["max_abs_diff_to_torch"] = float(max(np.abs(vectors["torch"][k] - vectors[name][k]).max() for k in sets))
            entry["speedup_vs_torch"] = {k: round(entry["median_texts_per_s"][k] / out["backends"]["torch"]["median_texts_per_s"][k], 2)
                                         for k in sets}
    return out


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.core.console import set_verbosity
from pipe_embed.pipeline.core.store import Store
set_verbosity(1)
start = time.perf_counter()
art = run_mine(Store({data!r}), MineConfig(method="faiss", params={{"faiss": {{"index": {index!r}}}}}), "compose@latest").artifact
import sys as _s
print(json.dumps({{"wall_s": time.perf_counter() - start, "stats": art.stats,
                  "model_loaded": "transformers.models.bert.modeling_bert" in _s.modules}}))
"""


def rss(texts: int, anchors: int | None = None, index: str = "flat") -> dict:
    """Peak RSS of the dense mine stage over `texts` candidates with a pre-filled cache (model excluded)."""
    from pipe_embed.mining.cache import EmbeddingCache, text_keys
    from pipe_embed.mining.stage import cache_root
    from pipe_embed.pipeline.core.models import model_fingerprint

    rows = distinct_gloss_rows(texts)
    seen = [row["positives"][0] for row in rows]
    held_out = rows[anchors:] if anchors else []  # their texts stay candidates; they are not mined
    rows = rows[: anchors or texts]
    dim = 384
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data")
        compose = write_compose(store, rows, "bench_dense_rss", held_out)
        cache = EmbeddingCache(cache_root(store), model_fingerprint(None))
        rng = np.random.default_rng(0)
        for batch in (seen[i:i + 8192] for i in range(0, len(seen), 8192)):
            vecs = rng.normal(size=(len(batch), dim)).astype(np.float32)
            cache.put(text_keys(batch), vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
        anchor_texts = [r["anchor"] for r in rows]  # only the mined (train) anchors are encoded
        for i in range(0, len(anchor_texts), 8192):
            batch = anchor_texts[i:i + 8192]
            vecs = rng.normal(size=(len(batch), dim)).astype(np.float32)
            cache.put(text_keys(batch), vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
        run = run_child(CHILD.format(root=str(ROOT), data=str(store.root), index=index))
        wall, stderr, usage_mb = run.wall_s, run.stderr, run.peak_rss_mb
        child = json.loads(run.stdout.strip().splitlines()[-1])
        phases = [line.strip() for line in stderr.splitlines() if "peak RSS" in line]
        return {"candidate_texts": compose.stats["corpus_size"], "anchors": len(rows), "dim": dim, "index": index,
                "phases": phases,
                "embeddings": "random unit vectors pre-filled in the cache (model never loaded)",
                "model_loaded": child["model_loaded"], "encoded_texts": child["stats"]["encoded_texts"],
                "peak_rss_mb": round(usage_mb, 1), "stage_wall_s": round(child["wall_s"], 2),
                "process_wall_s": round(wall, 2), "seconds": child["stats"]["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["compare", "chess", "throughput", "rss", "all"], default="all")
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument("--rounds", type=int, default=3, help="throughput: rounds over the backends")
    parser.add_argument("--backends", default="torch,openvino,openvino-f32,onnx",
                        help="throughput and compare: backends to time (openvino = native precision when it passes)")
    parser.add_argument("--precision", choices=["auto", "f32"], default="auto",
                        help="compare: the mine stage's precision (auto: OpenVINO bf16 when it passes the check)")
    parser.add_argument("--rss-texts", type=int, default=200_000)
    parser.add_argument("--rss-anchors", type=int, default=200_000)
    parser.add_argument("--rss-index", choices=["flat", "ivf", "hnsw"], default="flat",
                        help="flat searches the vectors in place; ivf/hnsw hold a second copy in the index")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dense.json")
    args = parser.parse_args()
    global PROGRESS
    PROGRESS = args.out.with_suffix(".runs.partial.json")
    set_verbosity(-1)
    result: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({"benchmark": "dense",
                   "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                               "libraries": library_versions()}})
    result.setdefault("commands", {})
    if args.part in ("throughput", "all"):
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        result["throughput"] = throughput(args.rounds, backends)
        result["commands"]["throughput"] = f"python benchmarks/bench_dense.py --part throughput --rounds {args.rounds} --backends {args.backends}"
    if args.part in ("compare", "all"):
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        result["compare"] = compare(args.pairs, args.repeats, args.rounds, backends, args.precision)
        result["commands"]["compare"] = (f"python benchmarks/bench_dense.py --part compare --pairs {args.pairs} "
                                         f"--repeats {args.repeats} --rounds {args.rounds} --backends {args.backends} "
                                         f"--precision {args.precision}")
    if args.part in ("chess", "all"):
        result["chess"] = chess(args.repeats)
        result["commands"]["chess"] = f"python benchmarks/bench_dense.py --part chess --repeats {args.repeats}"
    if args.part in ("rss", "all"):
        result["rss"] = rss(args.rss_texts, args.rss_anchors, args.rss_index)
        result["commands"]["rss"] = (f"python benchmarks/bench_dense.py --part rss --rss-texts {args.rss_texts} "
                                     f"--rss-anchors {args.rss_anchors} --rss-index {args.rss_index}")
    result["targets"] = {"wall_time_ratio_max": 0.5, "mean_jaccard_min": 0.99, "cached_rerun_ratio_max": 0.1,
                         "peak_rss_mb_max": 2048, "min_cosine_to_torch": 0.9999}
    met = {}
    if "compare" in result:
        met["wall_time_ratio"] = result["compare"]["wall_time_ratio"] <= 0.5
        met["mean_jaccard"] = (result["compare"]["agreement"]["mean_jaccard"] or 0) >= 0.99
        met["cached_rerun"] = result["compare"]["cached_rerun_ratio"] <= 0.1
    if "compare" in result and "encode" in result["compare"]:
        met["min_cosine_to_torch"] = all(v.get("min_cosine_to_torch", 1.0) >= 0.9999
                                         for v in result["compare"]["encode"]["backends"].values())
    if "throughput" in result:
        met["same_vectors"] = all(v.get("min_cosine_to_torch", 1.0) >= 0.9999
                                  for v in result["throughput"]["backends"].values())
    if "rss" in result:
        met["peak_rss"] = result["rss"]["peak_rss_mb"] <= 2048
    result["targets_met"] = met
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    PROGRESS.unlink(missing_ok=True)  # everything is in the result now
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
