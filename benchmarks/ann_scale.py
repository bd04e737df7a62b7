"""Large exemplar sets: flat against the approximate indexes `index: auto` picks (IVF) or
that router.yaml can ask for (HNSW).

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ann_scale.py --sizes 100000 1000000

1. CLINC150 (train exemplars, val queries; CC BY 3.0, Larson et al. 2019): in-scope val
   accuracy of the nearest exemplar's intent with a flat, an IVF and an HNSW index over
   the 15,000 train exemplars (parameters as `plan_for` derives them from the size).
2. Synthetic sets of N vectors: the CLINC train vectors plus Gaussian noise, renormalised,
   each labelled with its source's intent. Per index type: build time, recall@10 against
   exact search (500 exemplars as queries), single-query search p50/p99 over 200 val
   queries, the index file's size and the anonymous memory a memory-mapped load keeps,
   and the val accuracy through it.

Embeddings are cached under $MODELTRIAGE_CACHE_DIR/bench (never in the repo).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import DEFAULT_DATA, machine_info, render_table

from modeltriage.core.ann import IndexSettings, build_faiss, plan_for, recall_at_k
from modeltriage.core.onnx_files import cache_root
from modeltriage.core.vector_index import FaissIndex
from modeltriage.learn.datasets import read_intents_jsonl


def rss_anon_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("RssAnon"):
                return int(line.split()[1]) / 1024
    return float("nan")


def embed(texts: list[str], name: str, backend: str) -> np.ndarray:
    path = cache_root() / "bench" / f"ann_scale_{backend}_{name}_{len(texts)}.npy"
    if path.exists():
        return np.load(path)
    from modeltriage.core.encoders import Encoder, SentenceTransformerEncoder
    from modeltriage.core.onnx_encoder import OnnxEncoder
    from modeltriage.learn.embedding_cache import CachingEncoder

    encoder: Encoder = (
        SentenceTransformerEncoder()
        if backend == "torch"
        else OnnxEncoder(backend, None, export=True)  # type: ignore[arg-type]
    )
    vectors = CachingEncoder(encoder, progress=False).encode(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def synthetic(
    base: np.ndarray, size: int, sigma: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    source = np.arange(size) % base.shape[0]
    out = np.empty((size, base.shape[1]), dtype=np.float32)
    for start in range(0, size, 100_000):
        part = source[start : start + 100_000]
        chunk = base[part] + rng.normal(0, sigma, (len(part), base.shape[1])).astype(np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start : start + len(part)] = chunk
    return out, source


def measure(
    kind: str, vectors: np.ndarray, labels: np.ndarray, queries: np.ndarray, gold: np.ndarray
) -> dict[str, Any]:
    plan = plan_for(len(vectors), IndexSettings(type=kind))  # type: ignore[arg-type]
    started = time.perf_counter()
    index = FaissIndex(build_faiss(plan, vectors))
    build_s = time.perf_counter() - started
    recall = recall_at_k(index, vectors, 500, 10)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        index.save(path)
        del index
        size_mb = path.stat().st_size / 2**20
        before = rss_anon_mb()
        loaded = FaissIndex.read(path)  # memory-mapped, as serving loads it
        times = []
        for query in queries[:200]:
            t0 = time.perf_counter()
            loaded.search(query[None, :], 10)
            times.append(1000 * (time.perf_counter() - t0))
        kept_mb = rss_anon_mb() - before
        _, ids = loaded.search(queries, 1)
        del loaded
    accuracy = float(np.mean(labels[ids[:, 0]] == gold))
    return {
        "index": plan.description,
        "build_s": round(build_s, 1),
        "recall@10": recall,
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "file_mb": round(size_mb),
        "anon_mb_after_mmap_load": round(kept_mb, 1),
        "val_accuracy": round(accuracy, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this")
    parser.add_argument("--sigma", type=float, default=0.02, help="noise per dimension")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--per-intent", type=int, default=100, help="train exemplars per intent")
    parser.add_argument("--val", type=int, default=3000, help="val queries (the first N in-scope)")
    parser.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"])
    args = parser.parse_args()
    train_all = read_intents_jsonl(args.data / "clinc150" / "train.intents.jsonl")
    seen: dict[str, int] = {}
    train = []
    for row in train_all:
        if row.intent and seen.get(row.intent, 0) < args.per_intent:
            seen[row.intent] = seen.get(row.intent, 0) + 1
            train.append(row)
    val_all = read_intents_jsonl(args.data / "clinc150" / "val.intents.jsonl")
    val = [r for r in val_all if r.intent][: args.val]
    names = sorted({r.intent for r in train if r.intent})
    code = {name: i for i, name in enumerate(names)}
    base = embed([r.text for r in train], "train", args.backend)
    queries = embed([r.text for r in val], "val", args.backend)
    print(f"embedded {len(base)} exemplars and {len(queries)} queries", file=sys.stderr)
    labels = np.array([code[r.intent] for r in train if r.intent])
    gold = np.array([code[r.intent] for r in val if r.intent])
    report: dict[str, Any] = {"machine": machine_info(), "sets": []}
    headers = [
        "set",
        "index",
        "build s",
        "recall@10",
        "p50 ms",
        "p99 ms",
        "file MB",
        "anon MB",
        "val acc",
    ]
    rows = []
    sets = [("CLINC150 train", base, labels)]
    for size in args.sizes:
        vectors, source = synthetic(base, size, args.sigma)
        sets.append((f"synthetic {size:,}", vectors, labels[source]))
    for name, vectors, vector_labels in sets:
        kinds = ["flat", "ivf"] + (["hnsw"] if len(vectors) <= args.hnsw_max else [])
        for kind in kinds:
            found = measure(kind, vectors, vector_labels, queries, gold)
            print(name, json.dumps(found), file=sys.stderr, flush=True)
            report["sets"].append({"set": name, **found})
            rows.append([name, *found.values()])
    print(render_table(headers, rows))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
