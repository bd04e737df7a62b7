#!/usr/bin/env python3
"""Latency of modeltriage routing: in process, over HTTP, and FAISS's BLAS threshold.

Run from the repository root:

    .venv/bin/python benchmarks/latency.py [--n 600] [--json out.json]

What it measures (all on the real all-MiniLM-L6-v2 encoder and FAISS IndexFlatIP):

1. In process, single requests, over a fixed list of realistic queries, after a warm-up,
   on two indexes: the shipped intents (``intents/``, ~500 exemplars) and an in-memory
   index of the CLINC150 train split (15,000 exemplars). Beside ``router.route()`` it
   times the parts: ``encoder.encode([q])`` alone, the FAISS search alone (query vector
   precomputed) and the pure policy ``decide()`` alone (neighbours precomputed). The
   variants are interleaved in rounds so machine noise hits them alike.
2. ``route_batch`` of 32 texts (throughput).
3. HTTP ``POST /route`` against a real uvicorn server that this script starts in a
   subprocess on 127.0.0.1 (a free port) and stops at the end: sequential requests with
   httpx, then 4 concurrent workers.
4. ``faiss.cvar.distance_compute_blas_threshold`` (modeltriage sets 4; faiss's default is
   20): the 3,100 CLINC150 val queries searched against both indexes in batches of
   1..3,100 with thresholds 20, 4 and 1.

Data: CLINC150 (Larson et al., 2019), CC BY 3.0, read from ../shared/data; never copied.
The machine is small and shared: compare rows within one run, not across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CLINC_CITATION,
    DEFAULT_DATA,
    REPO,
    CpuMeter,
    library_versions,
    machine_info,
    render_table,
    write_json,
)

# A fixed list of realistic requests: mostly support traffic like the shipped intents,
# some off-topic ones, a few long ones (the encoder's cost grows with length).
QUERIES: tuple[str, ...] = (
    "where is my order?",
    "my package says delivered but it's not here",
    "can I return shoes I bought 40 days ago",
    "how do I get a refund for a damaged blender",
    "when does the refund show up on my card",
    "I was charged twice for the same order",
    "what time do you close on sundays",
    "is there a store near downtown seattle",
    "do you have the 65 inch oled tv in stock",
    "compare the pixel 9 and the iphone 16 cameras",
    "cancel my order please",
    "I forgot my password and the reset email never arrives",
    "change the email address on my account",
    "the promo code SAVE20 says it's expired but the ad says valid until friday",
    "can I pay with paypal or klarna",
    "how much is express shipping to canada",
    "my gift card balance shows zero",
    "I want to talk to a real person",
    "this is the third time I'm writing, I want to escalate this complaint",
    "pause my monthly subscription for two months",
    "my laptop won't turn on after the update, the light blinks orange",
    "is water damage covered by the warranty",
    "what does your privacy policy say about selling my data",
    "we need 500 units for our office, do you offer volume pricing",
    "hi there, how are you today?",
    "why does my python script raise KeyError: 'id' when I parse this json response",
    "write me a haiku about autumn",
    "what's the capital of australia",
    "translate good morning into german",
    "explain the difference between a roth ira and a traditional ira",
    "I ordered a washing machine three weeks ago, the tracking number stopped updating "
    "after it left the warehouse in Ohio, customer service promised a callback that never "
    "came, and now the order page says 'exception'. What is going on and when will it "
    "arrive?",
    "Here is my code:\n\nasync function load() {\n  const r = await fetch('/api/items');\n"
    "  return r.json\n}\n\nload().then(items => items.map(i => i.name))\n\nWhy do I get "
    "'items.map is not a function'?",
)

TOP_K_BLAS = 10
BLAS_THRESHOLDS = (20, 4, 1)
BLAS_BATCHES = (1, 4, 8, 16, 32, 3100)


# --------------------------------------------------------------------------- helpers


def summarise(seconds: Sequence[float], wall: float | None = None) -> dict[str, Any]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    out: dict[str, Any] = {
        "n": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }
    # Throughput of a sequential loop: requests over the time spent in them.
    out["per_s"] = float(ms.size / (wall if wall is not None else ms.sum() / 1000))
    return out


def interleaved(
    variants: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]],
    n: int,
    rounds: int,
    warmup: int,
    budget_s: float,
) -> dict[str, dict[str, Any]]:
    """Time each variant ``n`` times, split into ``rounds`` interleaved rounds."""
    for fn, items in variants.values():
        for i in range(warmup):
            fn(items[i % len(items)])
    times: dict[str, list[float]] = {name: [] for name in variants}
    cursor = dict.fromkeys(variants, 0)
    per_round = max(1, n // rounds)
    started = time.perf_counter()
    meter = CpuMeter()
    for _ in range(rounds):
        for name, (fn, items) in variants.items():
            for _ in range(per_round):
                item = items[cursor[name] % len(items)]
                cursor[name] += 1
                t0 = time.perf_counter()
                fn(item)
                times[name].append(time.perf_counter() - t0)
        if time.perf_counter() - started > budget_s:
            print(f"  (time budget {budget_s:.0f}s reached, stopping early)", file=sys.stderr)
            break
    load = meter.stop()
    result = {name: summarise(t) | load for name, t in times.items()}
    return result


def other_load(result: dict[str, Any]) -> str:
    others = result.get("others_cpu_pct")
    if others is None:
        return "(CPU use of other processes: unknown)"
    return (
        f"(during these: other processes used {others:.0f}% of the machine's CPU, "
        f"machine busy {result['machine_busy_pct']:.0f}%)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- loading


def load_shipped(intents_dir: Path, encoder: Any) -> tuple[Any, Any, str]:
    """The shipped intents with their saved index, or built in memory if it is stale.

    Building in memory keeps this script from writing into intents/.index.
    """
    from modeltriage import IndexStateError, Router, load_intents
    from modeltriage.core.index import build_in_memory, exemplar_rows, load_index
    from modeltriage.core.vector_index import FaissIndex

    intent_set = load_intents(intents_dir)
    rows = exemplar_rows(intent_set.intents)
    try:
        loaded = load_index(intent_set.index_path, rows, encoder, intents_dir)
        how = "saved index"
    except IndexStateError as exc:
        print(
            f"  saved index not usable ({type(exc).__name__}); building it in memory",
            file=sys.stderr,
        )
        loaded = build_in_memory(rows, encoder, FaissIndex)
        how = "built in memory (saved index stale)"
    return Router(intent_set, encoder, loaded), loaded, how


def load_clinc(data_dir: Path, config: Any, encoder: Any) -> tuple[Any, Any]:
    from modeltriage import Router
    from modeltriage.core.index import build_in_memory, exemplar_rows
    from modeltriage.core.vector_index import FaissIndex
    from modeltriage.learn.datasets import intent_set_from_labelled, read_intents_jsonl

    rows = read_intents_jsonl(data_dir / "clinc150" / "train.intents.jsonl")
    intent_set = intent_set_from_labelled(rows, config)
    loaded = build_in_memory(exemplar_rows(intent_set.intents), encoder, FaissIndex)
    return Router(intent_set, encoder, loaded), loaded


# --------------------------------------------------------------------------- server


def serve_main(port: int, intents_dir: Path) -> int:
    """Entry point of the server subprocess: the shipped intents behind uvicorn."""
    import uvicorn

    from modeltriage import SentenceTransformerEncoder
    from modeltriage.http.app import create_app

    encoder = SentenceTransformerEncoder()
    router, _, how = load_shipped(intents_dir, encoder)
    print(f"server: shipped intents ({how}), port {port}", file=sys.stderr, flush=True)
    app = create_app(router=router)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


@contextlib.contextmanager
def server_process(intents_dir: Path, startup_timeout: float) -> Any:
    import httpx

    port = free_port()
    # Closed in the finally below.
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115
        "w+", prefix="modeltriage-bench-server-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-internal",
            str(port),
            "--intents",
            str(intents_dir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(REPO),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {startup_timeout:.0f}s")
            time.sleep(0.25)
        yield base, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(log.name)


def http_sequential(
    base: str, server_pid: int, n: int, warmup: int, budget_s: float
) -> dict[str, Any]:
    import httpx

    times: list[float] = []
    with httpx.Client(base_url=base, timeout=30.0) as client:
        for i in range(warmup):
            client.post("/route", json={"text": QUERIES[i % len(QUERIES)]}).raise_for_status()
        meter = CpuMeter([server_pid])
        started = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            client.post("/route", json={"text": QUERIES[i % len(QUERIES)]}).raise_for_status()
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - started > budget_s:
                break
        wall = time.perf_counter() - started
    return summarise(times, wall) | meter.stop()


def http_concurrent(
    base: str, server_pid: int, n: int, workers: int, budget_s: float
) -> dict[str, Any]:
    import httpx

    times: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    started = time.perf_counter()

    def worker(offset: int) -> None:
        local: list[float] = []
        try:
            with httpx.Client(base_url=base, timeout=30.0) as client:
                for i in range(offset, n, workers):
                    if time.perf_counter() - started > budget_s:
                        break
                    t0 = time.perf_counter()
                    client.post(
                        "/route", json={"text": QUERIES[i % len(QUERIES)]}
                    ).raise_for_status()
                    local.append(time.perf_counter() - t0)
        except BaseException as exc:  # reported below
            errors.append(exc)
        with lock:
            times.extend(local)

    meter = CpuMeter([server_pid])
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return summarise(times, wall) | {"workers": workers} | meter.stop()


# --------------------------------------------------------------------------- faiss


def blas_threshold_sweep(
    indexes: dict[str, Any], queries: np.ndarray, rounds: int, per_cell: int = 128
) -> list[dict[str, Any]]:
    """Per-query search time for each (index, batch size, threshold).

    The thresholds are interleaved innermost on the same queries, and each cell is short
    and repeated ``rounds`` times, so that other work on the machine hits them alike; the
    minimum over rounds is the least disturbed figure.
    """
    import faiss

    original = faiss.cvar.distance_compute_blas_threshold
    cells: dict[tuple[str, int, int], list[float]] = {}
    same_top1: dict[tuple[str, int, int], bool] = {}
    try:
        for r in range(rounds):
            for name, index in indexes.items():
                for batch in BLAS_BATCHES:
                    count = max(batch, per_cell)
                    start = (r * count) % max(1, len(queries) - count + 1)
                    chunk_all = queries[start : start + count]
                    reference = None
                    for threshold in BLAS_THRESHOLDS:
                        faiss.cvar.distance_compute_blas_threshold = threshold
                        top1 = []
                        t0 = time.perf_counter()
                        for i in range(0, len(chunk_all), batch):
                            _, ids = index.search(chunk_all[i : i + batch], TOP_K_BLAS)
                            top1.append(ids[:, 0])
                        elapsed = time.perf_counter() - t0
                        cells.setdefault((name, batch, threshold), []).append(
                            elapsed / len(chunk_all) * 1e6
                        )
                        ids_now = np.concatenate(top1)
                        reference = ids_now if reference is None else reference
                        key = (name, batch, threshold)
                        same_top1[key] = same_top1.get(key, True) and bool(
                            np.array_equal(reference, ids_now)
                        )
    finally:
        faiss.cvar.distance_compute_blas_threshold = original
    return [
        {
            "index": name,
            "batch": batch,
            "threshold": threshold,
            "path": "BLAS" if batch >= threshold else "direct (SIMD loop)",
            "us_per_query_min": min(us),
            "us_per_query_median": statistics.median(us),
            "rounds": len(us),
            "top1_same_as_threshold_20": same_top1[(name, batch, threshold)],
        }
        for (name, batch, threshold), us in cells.items()
    ]


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intents", type=Path, default=REPO / "intents")
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding clinc150/ (default: %(default)s)",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=600,
        help="timed single requests per in-process variant (default 600)",
    )
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument(
        "--batches", type=int, default=15, help="timed route_batch(32) calls per index (0 to skip)"
    )
    parser.add_argument(
        "--http-n", type=int, default=400, help="sequential HTTP requests (0 to skip HTTP)"
    )
    parser.add_argument(
        "--concurrent-n",
        type=int,
        default=400,
        help="requests of the concurrent HTTP run (0 to skip)",
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--blas-rounds",
        type=int,
        default=10,
        help="rounds of the FAISS BLAS-threshold sweep (0 to skip)",
    )
    parser.add_argument(
        "--budget", type=float, default=60.0, help="time budget in seconds of each timed loop"
    )
    parser.add_argument(
        "--no-clinc",
        action="store_true",
        help="skip the 15,000-exemplar CLINC150 index (saves ~30s)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--serve-internal", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.serve_internal is not None:
        return serve_main(args.serve_internal, args.intents)

    from modeltriage import SentenceTransformerEncoder
    from modeltriage.core.costs import estimate_tokens
    from modeltriage.core.policy import decide

    report: dict[str, Any] = {"machine": machine_info(), "data": CLINC_CITATION}
    t_start = time.perf_counter()

    print("loading encoder ...", file=sys.stderr)
    t0 = time.perf_counter()
    encoder = SentenceTransformerEncoder()
    report["encoder_load_s"] = time.perf_counter() - t0

    import faiss
    import torch

    report["versions"] = library_versions()
    report["threads"] = {"torch": torch.get_num_threads(), "faiss_omp": faiss.omp_get_max_threads()}

    shipped_router, shipped_index, how = load_shipped(args.intents, encoder)
    routers = {"shipped": (shipped_router, shipped_index)}
    report["shipped_index"] = {
        "how": how,
        "exemplars": shipped_index.manifest.exemplars,
        "intents": shipped_index.manifest.intents,
    }
    if not args.no_clinc:
        print("embedding CLINC150 train (15,000 exemplars) ...", file=sys.stderr)
        t0 = time.perf_counter()
        clinc_router, clinc_index = load_clinc(args.data, shipped_router.config, encoder)
        report["clinc_index"] = {
            "build_s": time.perf_counter() - t0,
            "exemplars": clinc_index.manifest.exemplars,
            "intents": clinc_index.manifest.intents,
        }
        routers["clinc15k"] = (clinc_router, clinc_index)
    config = shipped_router.config
    top_k = config.scoring.top_k

    # Precomputed inputs of the part-timers, one per query.
    vectors = [encoder.encode([q]) for q in QUERIES]
    tokens = [estimate_tokens(q, config.cost.chars_per_token) for q in QUERIES]
    variants: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]] = {
        "encode([q]) alone": (lambda q: encoder.encode([q]), QUERIES),
    }
    for name, (router, loaded) in routers.items():
        intents = {i.name: i for i in router.intent_set.intents}
        neighbours = []
        for v in vectors:
            neighbours.extend(loaded.neighbours(v, top_k))
        index = loaded.index
        variants[f"{name}: FAISS search alone"] = (
            lambda v, index=index: index.search(v, top_k),
            vectors,
        )
        variants[f"{name}: decide() alone"] = (
            lambda j, nb=neighbours, it=intents: decide(nb[j], config, it, tokens[j]),
            list(range(len(QUERIES))),
        )
        variants[f"{name}: router.route(q)"] = (lambda q, r=router: r.route(q), QUERIES)

    # The same router with the decision log on (SQLite in a temp dir, background writer):
    # logging must not slow routing.
    from modeltriage.loading import open_logger
    from modeltriage.router import Router

    log_dir = Path(tempfile.mkdtemp(prefix="modeltriage-bench-log-"))
    logged_router = Router(
        shipped_router.intent_set,
        encoder,
        shipped_index,
        open_logger(shipped_router.intent_set, f"sqlite:///{log_dir}/decisions.sqlite3"),
    )
    variants["shipped: router.route(q) + SQLite log"] = (logged_router.route, QUERIES)

    print(
        f"in-process: {len(variants)} variants x {args.n} calls, interleaved ...", file=sys.stderr
    )
    inproc = interleaved(
        variants, args.n, args.rounds, warmup=2 * len(QUERIES), budget_s=args.budget * 2
    )
    report["in_process"] = inproc
    log_stats = logged_router.logger
    assert log_stats is not None
    logged_router.close()
    report["log"] = {"written": log_stats.written, "dropped": log_stats.dropped}
    shutil.rmtree(log_dir, ignore_errors=True)
    print(
        "\n## In process, single requests "
        f"({len(QUERIES)} fixed queries cycled, top_k={top_k}, "
        f"aggregation={config.scoring.aggregation})"
    )
    print(
        render_table(
            ["variant", "n", "p50 ms", "p99 ms", "mean ms", "per s"],
            [
                [k, v["n"], v["p50_ms"], v["p99_ms"], v["mean_ms"], v["per_s"]]
                for k, v in inproc.items()
            ],
        )
    )
    print(other_load(next(iter(inproc.values()))))
    print(
        f"decision log: {report['log']['written']} rows written, {report['log']['dropped']} dropped"
    )
    enc = inproc["encode([q]) alone"]["p50_ms"]
    for name in routers:
        route = inproc[f"{name}: router.route(q)"]["p50_ms"]
        print(f"{name}: route p50 - encode p50 = {route - enc:.2f} ms of routing overhead")

    if args.batches > 0:
        batch_rows = []
        batches = [
            [QUERIES[(b * 32 + i) % len(QUERIES)] for i in range(32)] for b in range(len(QUERIES))
        ]
        bvariants: dict[str, tuple[Callable[[Any], Any], Sequence[Any]]] = {
            "encode(32) alone": (encoder.encode, batches)
        }
        for name, (router, _) in routers.items():
            bvariants[f"{name}: route_batch(32)"] = (lambda b, r=router: r.route_batch(b), batches)
        bres = interleaved(bvariants, args.batches, rounds=3, warmup=2, budget_s=args.budget)
        for k, v in bres.items():
            v["texts_per_s"] = 32 * 1000 / v["mean_ms"]
            batch_rows.append(
                [k, v["n"], v["p50_ms"], v["p99_ms"], v["p50_ms"] / 32, v["texts_per_s"]]
            )
        report["batch32"] = bres
        batch_note = other_load(next(iter(bres.values())))
        print("\n## Batches of 32 texts")
        print(
            render_table(["variant", "calls", "p50 ms", "p99 ms", "ms/text", "texts/s"], batch_rows)
        )
        print(batch_note)

    if args.http_n > 0:
        print("\nstarting uvicorn subprocess on 127.0.0.1 ...", file=sys.stderr)
        http: dict[str, Any] = {}
        with server_process(args.intents, startup_timeout=120) as (base, pid):
            http["sequential"] = http_sequential(
                base, pid, args.http_n, warmup=30, budget_s=args.budget
            )
            if args.concurrent_n > 0:
                http[f"concurrent_{args.workers}"] = http_concurrent(
                    base, pid, args.concurrent_n, args.workers, budget_s=args.budget
                )
        report["http"] = http
        print(
            "\n## HTTP POST /route (uvicorn subprocess, shipped intents, httpx client, keep-alive)"
        )
        print(
            render_table(
                ["run", "n", "p50 ms", "p99 ms", "mean ms", "req/s", "others' CPU %"],
                [
                    [
                        k,
                        v["n"],
                        v["p50_ms"],
                        v["p99_ms"],
                        v["mean_ms"],
                        v["per_s"],
                        v["others_cpu_pct"],
                    ]
                    for k, v in http.items()
                ],
            )
        )

    if args.blas_rounds > 0:
        from modeltriage.learn.datasets import read_intents_jsonl

        print("\nembedding 3,100 CLINC150 val queries for the FAISS sweep ...", file=sys.stderr)
        val = read_intents_jsonl(args.data / "clinc150" / "val.intents.jsonl")
        queries = np.ascontiguousarray(encoder.encode([r.text for r in val]), dtype=np.float32)
        indexes = {name: loaded.index for name, (_, loaded) in routers.items()}
        sweep = blas_threshold_sweep(indexes, queries, args.blas_rounds)
        report["faiss_blas_threshold"] = sweep
        print(
            f"\n## FAISS IndexFlatIP search, {len(queries)} val queries in batches, k="
            f"{TOP_K_BLAS}: microseconds per query, min / median of {args.blas_rounds} rounds"
        )
        header = ["index", "batch"] + [f"thr={t}" for t in BLAS_THRESHOLDS]
        table = []
        for name in indexes:
            for batch in BLAS_BATCHES:
                cells = {
                    r["threshold"]: r for r in sweep if r["index"] == name and r["batch"] == batch
                }
                table.append(
                    [name, batch]
                    + [
                        f"{cells[t]['us_per_query_min']:.1f} / "
                        f"{cells[t]['us_per_query_median']:.1f}" + ("" if batch >= t else "*")
                        for t in BLAS_THRESHOLDS
                    ]
                )
        print(render_table(header, table))
        print(
            "* = direct (non-BLAS) path, taken when batch < threshold. "
            "modeltriage keeps faiss's default (20); router.route() searches a batch of 1."
        )
        mismatched = [r for r in sweep if not r["top1_same_as_threshold_20"]]
        print(
            f"top-1 ids identical across thresholds: {not mismatched}"
            + (f" (differs in {len(mismatched)} cells)" if mismatched else "")
        )

    report["total_s"] = time.perf_counter() - t_start
    print(f"\ntotal {report['total_s']:.0f}s; data: {CLINC_CITATION}")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
