#!/usr/bin/env python3
"""What it costs to answer only once a decision is committed (``log.durability: ack``)
versus committing in the background every ``flush_interval_s`` (``async``).

Run from the repository root:

    PYTHONPATH=src .venv/bin/python benchmarks/log_durability.py [--per-thread 400]

For each mode and each number of concurrent callers (1, 4, 16 threads), every thread logs
``--per-thread`` decisions through one :class:`DecisionLogger` on a SQLite file in WAL mode
with ``synchronous=NORMAL`` (the store's settings), timing each ``log()`` call: the time a
request handler would add to its response. With ``ack``, concurrent callers share commits
(group commit), so the commits per second stay well below the decisions per second.

Then, over HTTP: for each mode, ``modeltriage serve`` (the real CLI and uvicorn in a
subprocess, fake encoder, SQLite log) takes ``POST /route`` from 4 client threads for
``--seconds``; the script reports latency and throughput, then kills the server with
kill -9 while the load runs and counts the answered (200) decisions missing from the log.
The machine is small and shared: compare rows within one run, not across runs.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import httpx

from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.core.decision import Decision
from modeltriage.log.sqlite import SQLiteStore
from modeltriage.log.writer import DecisionLogger, Durability

INTENTS = Path(__file__).resolve().parent.parent / "intents"


def one_run(
    decision: Decision, mode: Durability, threads: int, per_thread: int, db: Path
) -> dict[str, float]:
    logger = DecisionLogger(SQLiteStore(db), durability=mode, flush_interval_s=0.2)
    timings: list[list[float]] = [[] for _ in range(threads)]

    def work(slot: int) -> None:
        for i in range(per_thread):
            logged = decision.model_copy(update={"id": f"{mode}-{threads}-{slot}-{i}"})
            started = time.perf_counter()
            logger.log(logged, "what are your opening hours")
            timings[slot].append(time.perf_counter() - started)

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    pending_at_end = logger.pending
    logger.close()
    flat = sorted(t for per in timings for t in per)
    return {
        "p50_ms": statistics.median(flat) * 1000,
        "p99_ms": flat[int(len(flat) * 0.99) - 1] * 1000,
        "per_s": len(flat) / elapsed,
        "pending_at_end": pending_at_end,
    }


LAUNCH = (
    "import sys\n"
    "from modeltriage import HashingEncoder\n"
    "from modeltriage.cli.main import main\n"
    "sys.exit(main(['serve', '--intents', sys.argv[1], '--port', sys.argv[2]],"
    " encoder=HashingEncoder()))\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _client(url: str, stop: threading.Event, out: list[tuple[str, float]]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        i = 0
        while not stop.is_set():
            i += 1
            started = time.perf_counter()
            try:
                r = client.post("/route", json={"text": f"when do you open on sunday {i}"})
            except httpx.HTTPError:
                return
            if r.status_code == 200:
                out.append((r.json()["id"], time.perf_counter() - started))


def http_run(mode: Durability, seconds: float, tmp: Path) -> str:
    intents = tmp / f"intents-{mode}"
    shutil.copytree(INTENTS, intents, ignore=shutil.ignore_patterns(".index", ".log*"))
    config = intents / "router.yaml"
    text = config.read_text()
    for old, new in (
        ("\n  url: .log/decisions.sqlite3\n", "\n  url: decisions.db\n"),
        ("\n  durability: ack ", f"\n  durability: {mode} "),
    ):
        assert old in text, f"intents/router.yaml has no {old.strip()!r} line"
        text = text.replace(old, new)
    config.write_text(text)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(intents), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        stop = threading.Event()
        answered: list[tuple[str, float]] = []
        clients = [threading.Thread(target=_client, args=(url, stop, answered)) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(1.0)  # warm-up, not timed
        first = len(answered)
        time.sleep(seconds)
        timed = sorted(latency for _, latency in answered[first:])
        server.send_signal(signal.SIGKILL)  # under load
        stop.set()
        for client in clients:
            client.join(30)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
    store = SQLiteStore(intents / "decisions.db")
    lost = sum(1 for decision_id, _ in answered if store.decision(decision_id) is None)
    store.close()
    return (
        f"{mode:6} {statistics.median(timed) * 1000:8.2f}  "
        f"{timed[int(len(timed) * 0.99) - 1] * 1000:7.2f}  {len(timed) / seconds:9.0f}  "
        f"{lost} of {len(answered)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-thread", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed HTTP load per mode")
    args = parser.parse_args()
    router = Router.in_memory(load_intents(INTENTS), HashingEncoder())
    decision = router.route("what are your opening hours", log=False)
    print("mode   threads  log() p50 ms  p99 ms  decisions/s  queued when the last returned")
    with tempfile.TemporaryDirectory() as tmp:
        for threads in (1, 4, 16):
            for mode in ("async", "ack"):
                db = Path(tmp) / f"{mode}-{threads}.db"
                got = one_run(decision, mode, threads, args.per_thread, db)  # type: ignore[arg-type]
                print(
                    f"{mode:6} {threads:7}  {got['p50_ms']:12.3f}  {got['p99_ms']:6.2f}  "
                    f"{got['per_s']:11.0f}  {got['pending_at_end']:.0f}"
                )
        print("\nHTTP POST /route, 4 clients; then kill -9 under load")
        print("mode   p50 ms   p99 ms   requests/s  answered decisions lost")
        for mode in ("async", "ack", "async", "ack"):
            print(http_run(mode, args.seconds, Path(tmp) / str(time.monotonic_ns())))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
