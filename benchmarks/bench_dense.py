"""Dense mining against sentence-transformers' `mine_hard_negatives`, the cache, and memory at 200k texts.

Part `compare` (20k WordNet synsets: first lemma -> gloss, lemmas and glosses unique, seeded sample):
the mine stage (`run_mine`, method faiss) and `sentence_transformers.util.mine_hard_negatives`
(use_faiss=True, output_format="triplet") with equal settings: range_max 30, 3 negatives, relative
margin 0.05, top sampling, batch size 64, the same already-loaded all-MiniLM-L6-v2 (load time
excluded for both, warmed up by one batch). Reported: wall times and their ratio, agreement of the chosen negatives per
anchor, and a second mine-stage run (--force) that finds every vector in the embedding cache.

Part `rss` (200k candidate texts, 200k anchors): peak RSS of the mine stage in a child process with
the embedding cache filled beforehand with random unit vectors under the bundled model's weight
hash, so the stage runs its real path (cache lookup, FAISS flat search in chunks, selection,
writing, diagnostics) but never loads the model: "model excluded". Imports (torch, faiss, …) count.

    python benchmarks/bench_dense.py [--part compare|rss|all] [--pairs 20000] [--rss-texts 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from pipe_embed.pipeline.core.console import set_verbosity  # noqa: E402
from pipe_embed.pipeline.core.pairs import read_pairs  # noqa: E402
from pipe_embed.pipeline.core.store import Store  # noqa: E402

from benchmarks.child import run_child  # noqa: E402
from benchmarks.wordnet_pairs import canonical, synset_rows, synsets, write_compose  # noqa: E402

SETTINGS = {"range_max": 30, "num_negatives": 3, "relative_margin": 0.05, "batch_size": 64}


def compare(pairs: int) -> dict:
    """The mine stage vs mine_hard_negatives on the same pairs and model; then the cached rerun."""
    from datasets import Dataset
    from pipe_embed.mining.dense import Encoder
    from pipe_embed.mining.stage import MineConfig, cache_root, run_mine
    from pipe_embed.pipeline.core.models import load_model
    from sentence_transformers.util import mine_hard_negatives

    rows = synset_rows(pairs)
    model = load_model(None)
    model.encode([f"warm-up sentence number {i}" for i in range(64)], batch_size=64)  # first-call costs
    out: dict = {"pairs": len(rows), "settings": SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data")
        compose = write_compose(store, rows, "bench_dense")
        config = MineConfig(method="faiss", **SETTINGS)

        def ours(force: bool) -> tuple[float, dict]:
            encoder = Encoder(None, batch_size=SETTINGS["batch_size"], cache_root=cache_root(store))
            encoder._model = model  # the loaded model: load time excluded, as for the peer
            start = time.perf_counter()
            art = run_mine(store, config, compose, force=force, encoder=encoder).artifact
            return time.perf_counter() - start, {"ref": art.ref, "stats": art.stats, "rows": read_pairs(art.file("pairs.jsonl"))}

        first_s, first = ours(force=False)
        print(f"mine stage, cold cache: {first_s:.1f}s", file=sys.stderr)
        dataset = Dataset.from_dict({"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]})
        start = time.perf_counter()
        peer = mine_hard_negatives(dataset, model, range_max=SETTINGS["range_max"], num_negatives=SETTINGS["num_negatives"],
                                   relative_margin=SETTINGS["relative_margin"], sampling_strategy="top",
                                   batch_size=SETTINGS["batch_size"], use_faiss=True, output_format="triplet",
                                   verbose=False)
        peer_s = time.perf_counter() - start
        print(f"mine_hard_negatives: {peer_s:.1f}s", file=sys.stderr)
        second_s, second = ours(force=True)
        print(f"mine stage, warm cache: {second_s:.1f}s", file=sys.stderr)

    peer_negs: dict[str, set[str]] = {}
    for item in peer:
        peer_negs.setdefault(item["anchor"], set()).add(item["negative"])
    jaccard, share, both_empty = [], [], 0
    for r in first["rows"]:
        mine, theirs = set(r["hard_negatives"]), peer_negs.get(r["anchor"], set())
        if not mine and not theirs:
            both_empty += 1
            continue
        jaccard.append(len(mine & theirs) / len(mine | theirs))
        if mine:
            share.append(len(mine & theirs) / len(mine))
    stats = first["stats"]
    out.update({
        "mine_stage_s": round(first_s, 2),
        "mine_hard_negatives_s": round(peer_s, 2),
        "wall_time_ratio": round(first_s / peer_s, 3),
        "mine_stage_seconds": stats["seconds"],
        "encoded_texts": stats["encoded_texts"],
        "cached_rerun_s": round(second_s, 2),
        "cached_rerun_encoded_texts": second["stats"]["encoded_texts"],
        "cached_rerun_ratio": round(second_s / first_s, 4),
        "agreement": {"anchors": len(first["rows"]), "anchors_both_without_negatives": both_empty,
                      "mean_jaccard": round(float(np.mean(jaccard)), 4) if jaccard else None,
                      "share_of_our_negatives_also_chosen_by_peer": round(float(np.mean(share)), 4) if share else None},
        "negatives": {"mine_stage": stats["negatives"], "mine_hard_negatives": len(peer),
                      "anchors_short_mine_stage": stats["short_of_negatives"],
                      "anchors_with_3_negatives_peer": sum(1 for v in peer_negs.values() if len(v) >= 3),
                      "dropped_mine_stage": stats["dropped"]},
    })
    return out


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from pipe_embed.mining.stage import MineConfig, run_mine
from pipe_embed.pipeline.core.console import set_verbosity
from pipe_embed.pipeline.core.store import Store
set_verbosity(1)
start = time.perf_counter()
art = run_mine(Store({data!r}), MineConfig(method="faiss", index={index!r}), "compose@latest").artifact
import sys as _s
print(json.dumps({{"wall_s": time.perf_counter() - start, "stats": art.stats,
                  "model_loaded": "transformers.models.bert.modeling_bert" in _s.modules}}))
"""


def rss(texts: int, anchors: int | None = None, index: str = "flat") -> dict:
    """Peak RSS of the dense mine stage over `texts` candidates with a pre-filled cache (model excluded)."""
    from pipe_embed.mining.cache import EmbeddingCache, text_keys
    from pipe_embed.mining.stage import cache_root
    from pipe_embed.pipeline.core.models import model_fingerprint

    rows, seen = [], set()
    for number, (lemmas, definition) in enumerate(synsets()):
        for lemma in lemmas:
            text = f"{lemma}: {definition}"
            if text in seen:
                continue
            seen.add(text)
            rows.append(canonical(f"{lemma} #{number}", [text]))
            if len(rows) >= texts:
                break
        if len(rows) >= texts:
            break
    held_out = rows[anchors:] if anchors else []  # their texts stay candidates; they are not mined
    rows = rows[: anchors or texts]
    dim = 384
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data")
        compose = write_compose(store, rows, "bench_dense_rss", held_out)
        cache = EmbeddingCache(cache_root(store), f"{model_fingerprint(None)}-torch")
        rng = np.random.default_rng(0)
        for batch in (list(seen)[i:i + 8192] for i in range(0, len(seen), 8192)):
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
    parser.add_argument("--part", choices=["compare", "rss", "all"], default="all")
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--rss-texts", type=int, default=200_000)
    parser.add_argument("--rss-anchors", type=int, default=200_000)
    parser.add_argument("--rss-index", choices=["flat", "ivf", "hnsw"], default="flat",
                        help="flat searches the vectors in place; ivf/hnsw hold a second copy in the index")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dense.json")
    args = parser.parse_args()
    set_verbosity(-1)
    result: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({"benchmark": "dense",
                   "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}})
    result.setdefault("commands", {})
    if args.part in ("compare", "all"):
        result["compare"] = compare(args.pairs)
        result["commands"]["compare"] = f"python benchmarks/bench_dense.py --part compare --pairs {args.pairs}"
    if args.part in ("rss", "all"):
        result["rss"] = rss(args.rss_texts, args.rss_anchors, args.rss_index)
        result["commands"]["rss"] = (f"python benchmarks/bench_dense.py --part rss --rss-texts {args.rss_texts} "
                                     f"--rss-anchors {args.rss_anchors} --rss-index {args.rss_index}")
    result["targets"] = {"wall_time_ratio_max": 1.0, "cached_rerun_ratio_max": 0.1, "peak_rss_mb_max": 2048}
    met = {}
    if "compare" in result:
        met["wall_time_ratio"] = result["compare"]["wall_time_ratio"] <= 1.0
        met["cached_rerun"] = result["compare"]["cached_rerun_ratio"] <= 0.1
    if "rss" in result:
        met["peak_rss"] = result["rss"]["peak_rss_mb"] <= 2048
    result["targets_met"] = met
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
