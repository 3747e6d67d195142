"""Paired quality of bf16 autocast vs f32 training on CPU, so a faster precision is kept only while it
changes results within noise: the main job's recipe on the chess sample (MNRL at temperature 0.05,
batch 16, lr 5e-5, warmup 0.1, no-duplicates sampler, 1 mined negative, max length 64, one epoch),
trainer seeds 0..N-1, test MRR@10 per query for both precisions, the paired difference bf16 - f32
with a bootstrap 95% interval over queries and seeds, and seconds per step. Needs only torch,
transformers, sentence-transformers and datasets (it runs where pipe is not installed).

Inputs (--data DIR): train.jsonl = the pairs.jsonl of the main job's first faiss mine artifact,
pairs.test.jsonl and corpus.jsonl = its compose artifact's files (`pipe show --path compose@latest`).

    python benchmarks/bench_precision_quality.py --data DIR --model MODEL_DIR --seeds 3 \
        --out benchmarks/results/train_precision_quality.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mrr10(model, queries: list[str], qrel: list[set[str]], corpus_ids: list[str], corpus: list[str]) -> list[float]:
    q = model.encode(queries, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    c = model.encode(corpus, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    top = np.argsort(-(q @ c.T), axis=1)[:, :10]
    out = []
    for i, row in enumerate(top):
        rr = 0.0
        for rank, j in enumerate(row):
            if corpus_ids[j] in qrel[i]:
                rr = 1.0 / (rank + 1)
                break
        out.append(rr)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, required=True, help="train.jsonl, pairs.test.jsonl, corpus.jsonl")
    p.add_argument("--model", required=True, help="a SentenceTransformer directory (loaded as float32)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--limit", type=int, default=0, help="train rows (0 = all): a smoke run")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer import losses
    try:
        from sentence_transformers.base.sampler import BatchSamplers
    except ImportError:
        from sentence_transformers.training_args import BatchSamplers

    train = rows(args.data / "train.jsonl")
    train = train[: args.limit] if args.limit else train
    test = rows(args.data / "pairs.test.jsonl")
    corpus_rows = rows(args.data / "corpus.jsonl")
    corpus_ids = [r["id"] for r in corpus_rows]
    corpus = [r["text"] for r in corpus_rows]
    queries = [r["anchor"] for r in test]
    qrel = [set(r.get("positive_ids") or []) for r in test]
    flags = open("/proc/cpuinfo").read()
    cpu = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    result = {"cpu": cpu, "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "test_queries": len(queries),
              "train_rows": len(train), "runs": []}
    base = SentenceTransformer(args.model, device="cpu").float()
    base.max_seq_length = 64
    result["base_mrr10"] = float(np.mean(mrr10(base, queries, qrel, corpus_ids, corpus)))
    print("base", result["base_mrr10"], flush=True)
    for seed in range(args.seeds):
        for precision in ("f32", "bf16"):
            rng = random.Random(seed)
            positives = [r["positive"] for r in train]
            data = {"anchor": [], "positive": [], "negative_1": []}
            for r in train:
                neg = (r.get("hard_negatives") or [None])[0] or rng.choice(positives)
                data["anchor"].append(r["anchor"])
                data["positive"].append(r["positive"])
                data["negative_1"].append(neg)
            model = SentenceTransformer(args.model, device="cpu").float()
            model.max_seq_length = 64
            loss = losses.MultipleNegativesRankingLoss(model, scale=20.0)
            out_dir = f"/tmp/pq-{seed}-{precision}"
            targs = SentenceTransformerTrainingArguments(
                output_dir=out_dir, num_train_epochs=1, per_device_train_batch_size=16, learning_rate=5e-5,
                warmup_ratio=0.1, weight_decay=0.01, seed=seed, data_seed=seed, bf16=precision == "bf16",
                use_cpu=True, batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", eval_strategy="no",
                report_to="none", logging_steps=1000, disable_tqdm=True, dataloader_num_workers=0)
            trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=Dataset.from_dict(data), loss=loss)
            start = time.perf_counter()
            out = trainer.train()
            wall = time.perf_counter() - start
            per_query = mrr10(model, queries, qrel, corpus_ids, corpus)
            run = {"seed": seed, "precision": precision, "steps": out.global_step, "train_s": round(wall, 2),
                   "s_per_step": round(wall / max(out.global_step, 1), 3), "mrr10": float(np.mean(per_query)),
                   "per_query": per_query, "param_dtype": str(next(model.parameters()).dtype)}
            result["runs"].append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "per_query"}), flush=True)
    # paired difference bf16 - f32 per seed, and a bootstrap over queries x seeds
    by = {(r["seed"], r["precision"]): np.array(r["per_query"]) for r in result["runs"]}
    diffs = np.stack([by[(s, "bf16")] - by[(s, "f32")] for s in range(args.seeds)])
    rng = np.random.default_rng(0)
    boots = []
    for _ in range(2000):
        qi = rng.integers(0, diffs.shape[1], diffs.shape[1])
        si = rng.integers(0, diffs.shape[0], diffs.shape[0])
        boots.append(diffs[si][:, qi].mean())
    result["paired_bf16_minus_f32"] = {"mean": float(diffs.mean()), "per_seed": diffs.mean(axis=1).tolist(),
                                       "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))]}
    print(json.dumps(result["paired_bf16_minus_f32"]), flush=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
