#!/usr/bin/env python3
"""Serving on a 15k-exemplar CLINC150 index: build time (cold, and after one edited intent
file), route() p50/p99, HTTP load with wrk before and after micro-batching, and the
serving worker's RSS, in one run.

Run from the repository root, on an otherwise idle machine if you can:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/serving.py [--backend onnx-int8] [--queries 1000]
        [--duration 30] [--concurrency 1,8,32] [--json out.json]

The intents directory (150 intent files from CLINC150 train, 100 exemplars each) is
written to a temporary folder and removed at the end. "Before batching" is the same
server with ``serving.max_batch: 1`` and ``batch_wait_ms: 0`` (one encoder call per
request); the query cache is off in both, so every request runs the encoder. Queries
are the first ``--queries`` val texts, cycled by wrk's Lua script.

Data: CLINC150 (Larson et al., 2019), CC BY 3.0, read from the shared data folder; never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, library_versions, machine_info, render_table, write_json
from backend_accuracy import data_dir
from latency import free_port

BIN = Path(sys.executable).parent


def write_clinc_intents(target: Path, rows: list[Any], serving: str, backend: str) -> None:
    target.mkdir(parents=True)
    base = (REPO / "intents" / "router.yaml").read_text(encoding="utf-8")
    extra = f"\nencoder: {{backend: {backend}}}\nserving: {serving}\n"
    (target / "router.yaml").write_text(base + extra, encoding="utf-8")
    by_intent: dict[str, list[str]] = {}
    for row in rows:
        if row.intent is not None:
            by_intent.setdefault(row.intent, []).append(row.text)
    for name, texts in by_intent.items():
        lines = [f"name: {json.dumps(name)}", "difficulty: easy", "exemplars:"]
        lines += [f"  - {json.dumps(t)}" for t in texts]
        (target / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def timed_build(intents: Path) -> float:
    code = (
        "import time; from modeltriage import build_index; s = time.perf_counter(); "
        f"build_index({str(intents)!r}); print(time.perf_counter() - s)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"build failed: {out.stderr.strip()[-1500:]}")
    return float(out.stdout.strip().splitlines()[-1])


def route_latency(intents: Path, queries: list[str]) -> dict[str, float]:
    from modeltriage import Router

    router = Router.load(intents, log=False)
    for text in queries[:50]:
        router.route(text, log=False)
    times = []
    for text in queries:
        started = time.perf_counter()
        router.route(text, log=False)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "n": len(times),
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(0.99 * (len(times) - 1))],
    }


LUA = """
local bodies = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/route", {["Content-Type"] = "application/json"},
                    bodies[(n %% #bodies) + 1])
end
"""


def wrk(
    port: int, script: Path | None, concurrency: int, duration: int, path: str = "/route"
) -> dict[str, Any]:
    """wrk at ``concurrency`` connections; ``script`` (Lua) writes the requests, None: GET."""
    threads = min(2, concurrency)
    argv = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float | None:
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found is None:
            return None
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
        return float(found.group(1)) * scale

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(x) for x in sock.groups()) if sock else 0
    )
    return {
        "concurrency": concurrency,
        "requests": int(total.group(1)) if total else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "errors": errors,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve_and_load(
    intents: Path, script: Path, levels: list[int], duration: int
) -> tuple[list[dict[str, Any]], float, int]:
    port = free_port()
    argv = [str(BIN / "modeltriage"), "serve", "--intents", str(intents), "--no-build"]
    server = subprocess.Popen(
        [*argv, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("the server did not start")
        results = [wrk(port, script, c, duration) for c in levels]
        served = sum(r["requests"] for r in results)
        return results, rss_mb(server.pid), served
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--backend", default="onnx-int8")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--per-intent", type=int, default=None, help="exemplars per intent (default: all 100)"
    )
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from modeltriage.learn.datasets import read_intents_jsonl

    clinc = data_dir(args.data) / "clinc150"
    train = read_intents_jsonl(clinc / "train.intents.jsonl")
    if args.per_intent is not None:
        seen: dict[str | None, int] = {}
        kept = []
        for row in train:
            seen[row.intent] = seen.get(row.intent, 0) + 1
            if seen[row.intent] <= args.per_intent:
                kept.append(row)
        train = kept
    queries = [r.text for r in read_intents_jsonl(clinc / "val.intents.jsonl")][: args.queries]
    work = Path(tempfile.mkdtemp(prefix="mt-serving-bench-"))
    try:
        report = run(args, work, train, queries)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json(args.json, {"machine": machine_info(), "versions": library_versions(), **report})


def run(args: argparse.Namespace, work: Path, train: list[Any], queries: list[str]) -> dict:
    levels = [int(c) for c in args.concurrency.split(",")]
    batched = "{query_cache_size: 0}"
    unbatched = "{query_cache_size: 0, max_batch: 1, batch_wait_ms: 0}"
    intents = work / "batched"
    write_clinc_intents(intents, train, batched, args.backend)
    cold = timed_build(intents)
    edited = next(intents.glob("*.yaml"))
    if edited.name == "router.yaml":
        edited = sorted(intents.glob("*.yaml"))[1]
    text = edited.read_text(encoding="utf-8").splitlines()
    text[3] = '  - "an exemplar edited for the rebuild benchmark"'
    edited.write_text("\n".join(text) + "\n", encoding="utf-8")
    rebuild = timed_build(intents)
    exemplars = sum(1 for r in train if r.intent is not None)
    print(f"{exemplars} exemplars")
    print(
        f"build {args.backend}: cold {cold:.1f} s, after one edited file {rebuild:.2f} s",
        flush=True,
    )
    route = route_latency(intents, queries)
    print(
        f"route() {args.backend}, {exemplars} exemplars: "
        f"p50 {route['p50_ms']:.2f} ms, p99 {route['p99_ms']:.2f} ms"
    )
    plain = work / "unbatched"
    shutil.copytree(intents, plain)
    router_yaml = plain / "router.yaml"
    router_yaml.write_text(
        router_yaml.read_text(encoding="utf-8").replace(
            f"serving: {batched}", f"serving: {unbatched}"
        ),
        encoding="utf-8",
    )
    bodies = ",".join("[==[" + json.dumps({"text": q}) + "]==]" for q in queries)
    script = work / "route.lua"
    script.write_text(LUA % bodies, encoding="utf-8")
    rows = []
    http: dict[str, Any] = {}
    for label, folder in (("before batching", plain), ("after batching", intents)):
        results, rss, served = serve_and_load(folder, script, levels, args.duration)
        http[label] = {"runs": results, "rss_mb": rss, "requests": served}
        for r in results:
            rows.append(
                [label, r["concurrency"], round(r["rps"], 1), r["p50_ms"], r["p99_ms"], r["errors"]]
            )
        print(f"{label}: RSS {rss:.0f} MB after {served} requests", flush=True)
    print(
        render_table(["server", "clients", "req/s", "p50 ms", "p99 ms", "errors"], rows), flush=True
    )
    return {
        "backend": args.backend,
        "build_cold_s": cold,
        "rebuild_s": rebuild,
        "route": route,
        "http": http,
    }


if __name__ == "__main__":
    main()
