#!/usr/bin/env python3
"""Ray Serve against plain uvicorn, in one run: the per-request overhead Ray adds (one
client, one request at a time) and throughput under load (wrk), with 1 and 2 replicas.

Run from the repository root, on an otherwise idle machine if you can:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ray_serve.py [--requests 300]
        [--duration 20] [--concurrency 8] [--json out.json]

Every server is a real `modeltriage serve` process on the same built index (a copy of
the shipped intents, ONNX MiniLM, exact FAISS) answering the same queries (the shipped
traffic sample, examples/traffic/support_day.jsonl, cycled). The query cache is off, so
every request runs the encoder. The Ray servers are `modeltriage serve --ray` with
deploy/ray/serve.yaml, autoscaling replaced by a fixed count N of Router and Encoder
replicas (each 0.5 CPU, so N=2 fits Ray's 2 CPUs here). The decision log is off.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, library_versions, machine_info, render_table, write_json
from latency import free_port
from serving import LUA, wrk

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 600.0


def make_intents(work: Path) -> Path:
    target = work / "intents"
    shutil.copytree(
        REPO / "intents", target, ignore=shutil.ignore_patterns(".index", ".log*", "*.db*")
    )
    with (target / "router.yaml").open("a", encoding="utf-8") as config:
        config.write("\nserving: {query_cache_size: 0}\n")
    subprocess.run(
        [str(BIN / "modeltriage"), "build", "--intents", str(target)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return target


def ray_config(work: Path, replicas: int) -> Path:
    config = yaml.safe_load((REPO / "deploy" / "ray" / "serve.yaml").read_text())
    for deployment in config["applications"][0]["deployments"]:
        deployment.pop("autoscaling_config", None)
        deployment["num_replicas"] = replicas
        deployment["ray_actor_options"] = {"num_cpus": 0.5}
    path = work / f"serve-{replicas}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start(argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODELTRIAGE_LOG_URL": "", "HF_HUB_OFFLINE": "1"}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*argv, "--port", str(port)], stdout=out, stderr=out, env=env, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            body = {"text": "hello"}
            if httpx.post(f"http://127.0.0.1:{port}/route", json=body, timeout=5).is_success:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    stop(server)
    raise SystemExit(f"server did not start:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
    try:
        server.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def sequential(port: int, queries: list[str], count: int) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for text in queries[:20]:  # warm-up: connections, first batches
            client.post("/route", json={"text": text})
        for n in range(count):
            started = time.perf_counter()
            response = client.post("/route", json={"text": queries[n % len(queries)]})
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": times[int(0.99 * (len(times) - 1))]}


def measure(
    name: str, argv: list[str], work: Path, queries: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    started = time.monotonic()
    server = start(argv, port, work / f"{name}.log")
    startup_s = time.monotonic() - started
    try:
        one = sequential(port, queries, args.requests)
        loaded = wrk(port, work / "bodies.lua", args.concurrency, args.duration)
        load_average = os.getloadavg()[0]
    finally:
        stop(server)
    row = {"server": name, "startup_s": startup_s, **{f"seq_{k}": v for k, v in one.items()}}
    row |= {f"load_{k}": v for k, v in loaded.items()}
    row["load_average"] = load_average
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="sequential requests")
    parser.add_argument("--duration", type=int, default=20, help="seconds of wrk load")
    parser.add_argument("--concurrency", type=int, default=8, help="wrk connections")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    traffic = REPO / "examples" / "traffic" / "support_day.jsonl"
    queries = [json.loads(line)["text"] for line in traffic.read_text().splitlines() if line]
    work = Path(tempfile.mkdtemp(prefix="mt-ray-bench-"))
    try:
        intents = make_intents(work)
        bodies = ", ".join(json.dumps(json.dumps({"text": q})) for q in queries)
        (work / "bodies.lua").write_text(LUA % bodies, encoding="utf-8")
        serve = [str(BIN / "modeltriage"), "serve", "--intents", str(intents), "--no-build"]
        load_before = os.getloadavg()
        rows = [measure("uvicorn (1 process)", serve, work, queries, args)]
        for replicas in (1, 2):
            argv = [*serve, "--ray", "--ray-config", str(ray_config(work, replicas))]
            rows.append(measure(f"ray, {replicas} replica(s)", argv, work, queries, args))
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    headers = ["server", "start s", "1 client p50 ms", "p99 ms", "rps", "p50 ms", "p99 ms"]
    keys = ["server", "startup_s", "seq_p50_ms", "seq_p99_ms", "load_rps", "load_p50_ms"]
    table = [[r[k] for k in [*keys, "load_p99_ms"]] for r in rows]
    print(render_table(headers, table))
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    write_json(
        args.json,
        {
            "machine": machine_info(),
            "versions": library_versions(),
            "load_average": [load_before[0], load_after[0]],
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
