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
The machine is small and shared: compare rows within one run, not across runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-thread", type=int, default=400)
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


if __name__ == "__main__":
    main()
