"""`modeltriage logs`, `simulate --escalation-rate log` and `tune --log` on a generated log
of a million decisions: wall time and peak memory, against reading every row as the report
used to, or (``--before-src``) against an earlier version's code in the same run.

    PYTHONPATH=src .venv/bin/python benchmarks/large_log.py --rows 1000000 --url /tmp/big.db
    PYTHONPATH=src .venv/bin/python benchmarks/large_log.py --rows 1000000 --url postgresql://...
    git archive 7924527 src | tar -x -C /tmp/before   # then --before-src /tmp/before/src

The log is generated once per URL (skipped when it already holds ``--rows`` decisions):
decisions spread over 30 days with the shipped router.yaml's models, feedback on 2% of
them, an answer check or a failover on 2%. Each measurement runs in a fresh process; its
peak RSS is the kernel's (``wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from _common import REPO, machine_info, render_table

from modeltriage.core.intents import load_intents
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry
from modeltriage.log.open import open_store

BATCH = 20_000


def generate(url: str, rows: int) -> float:
    from datetime import datetime, timezone

    config = load_intents(REPO / "intents").config
    models = [m for m in config.models if not m.specialised]
    reasons = ["confident", "low_margin", "no_match", "cascade"]
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    store = open_store(url)
    started = time.perf_counter()
    try:
        have = len(store.decisions(limit=1))
        if have and store.query("SELECT COUNT(*) FROM decisions")[0][0] >= rows:  # type: ignore[attr-defined]
            return 0.0
        for first in range(0, rows, BATCH):
            entries = []
            for n in range(first, min(rows, first + BATCH)):
                model = models[n % len(models)]
                entries.append(
                    LogEntry(
                        decision_id=f"d{n:09d}",
                        created_at=start + timedelta(seconds=2.5 * n),
                        text=f"generated request number {n} " + "x" * (n % 200),
                        text_sha256=f"{n:064x}",
                        intent=f"intent{n % 40}",
                        runner_up=None,
                        difficulty="moderate",
                        tier=model.tier,
                        model=model.name,
                        confidence=0.8,
                        margin=0.1,
                        cascaded=n % 10 == 0,
                        reason=reasons[n % len(reasons)],
                        estimated_cost_usd=1e-5 * (1 + n % 50),
                        latency_ms=3.0,
                        index_version="generated",
                        input_tokens=None if n % 4 == 0 else 10 + n % 300,
                        cascade_to=config.flagship_tier if n % 10 == 0 else None,
                    )
                )
            store.write_decisions(entries)
            events = [
                EventEntry(
                    "escalation" if n % 2 else "failover",
                    e.model,
                    None if n % 3 else e.model,
                    "escalate: hedged" if n % 4 == 1 else "keep",
                    e.decision_id,
                    e.created_at + timedelta(seconds=1),
                )
                for n, e in enumerate(entries[::50])
            ]
            store.write_events(events)
            for n, e in enumerate(entries[::50]):
                store.write_feedback(FeedbackEntry(e.decision_id, (n % 5) / 4, "user", None))
            print(f"  generated {first + len(entries):,}", file=sys.stderr, flush=True)
    finally:
        store.close()
    return time.perf_counter() - started


def measure(
    command: list[str], timeout: float, src: Path = REPO / "src", url: str | None = None
) -> dict[str, object]:
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    if url is not None:  # simulate --escalation-rate log reads the configured log
        env["MODELTRIAGE_LOG_URL"] = url
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = started + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            process.kill()
            os.wait4(process.pid, 0)
            return {
                "seconds": None,
                "cpu_s": None,
                "peak_rss_mb": None,
                "note": f"killed after {timeout:.0f}s",
            }
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    assert process.stderr is not None
    note = "" if os.waitstatus_to_exitcode(status) == 0 else process.stderr.read().decode()[-300:]
    return {
        "seconds": round(seconds, 1),
        # CPU of the process: on a shared machine the wall time is mostly waiting.
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "note": note,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", required=True, help="SQLite path or postgresql:// URL")
    parser.add_argument("--old-timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--before-src",
        type=Path,
        help="an earlier checkout's src/ (git worktree or archive): each command is also run "
        "with it, just before the current one, for a before/after pair from one run",
    )
    args = parser.parse_args()
    generated_s = generate(args.url, args.rows)
    intents = str(REPO / "intents")
    python = sys.executable
    rate = (
        "from modeltriage.core.intents import load_intents;"
        "from modeltriage.log.aggregate import checked_plans_in;"
        "from modeltriage.log.open import open_store;"
        f"s=open_store({args.url!r});"
        f"print(checked_plans_in(s, load_intents({intents!r}).config))"
    )
    old = (
        "from modeltriage.core.intents import load_intents;"
        "from modeltriage.log.report import summarise;"
        "from modeltriage.log.open import open_store;"
        f"s=open_store({args.url!r});"
        f"print(summarise(s.decisions(), s.feedback(), load_intents({intents!r}).config, "
        "s.events()).requests)"
    )
    mt = [python, "-m", "modeltriage.cli"]
    cli = [*mt, "logs", "--intents", intents, "--url", args.url]
    traffic = str(REPO / "examples" / "traffic" / "support_day.jsonl")
    commands = {
        "modeltriage logs": (cli, None),
        "modeltriage logs --since 2026-10-28": (
            [*cli, "--since", "2026-10-28T00:00:00+00:00"],
            None,
        ),
        "escalation rate from the log": ([python, "-c", rate], None),
        "modeltriage simulate --escalation-rate log": (
            [*mt, "simulate", "--intents", intents, "--traffic", traffic],
            args.url,
        ),
        "modeltriage tune --log": (
            [*mt, "tune", "--intents", intents, "--log", "--url", args.url],
            None,
        ),
    }
    commands["modeltriage simulate --escalation-rate log"][0].extend(["--escalation-rate", "log"])
    runs: dict[str, dict[str, object]] = {}
    sources = [("", REPO / "src")]
    if args.before_src is not None:
        sources.insert(0, ("before: ", args.before_src))
    for label, (command, env_url) in commands.items():
        for prefix, src in sources:
            timeout = args.old_timeout if prefix else 600
            runs[prefix + label] = measure(command, timeout, src, env_url)
    if args.before_src is None:
        runs["before: every row read into memory"] = measure([python, "-c", old], args.old_timeout)
    rows = [[n, r["seconds"], r["cpu_s"], r["peak_rss_mb"], r["note"]] for n, r in runs.items()]
    print(f"{args.rows:,} decisions in {args.url.split('@')[-1]} (generated in {generated_s:.0f}s)")
    print(render_table(["command", "seconds", "CPU s", "peak RSS MB", "note"], rows))
    if args.out is not None:
        report = {"machine": machine_info(), "rows": args.rows, "runs": runs}
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
