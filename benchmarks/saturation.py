#!/usr/bin/env python3
"""wrk at saturation against ``modeltriage serve``, then SIGTERM under load.

Run from the repository root, alone on the machine:

    PYTHONPATH=src .venv/bin/python benchmarks/saturation.py [--seconds 60] [--connections 32]

``modeltriage serve`` runs as a real process (the CLI and uvicorn, one worker) on a copy
of the shipped intents with the **fake encoder** (``HashingEncoder``: the service, the
index search, the policy and the decision log are real; the encoder's cost is not
measured) and the default decision log (SQLite, ``log.durability: ack``).

1. ``wrk`` sends ``POST /route`` (every body a different text, so the request cache does
   not answer) for ``--seconds`` with ``--threads`` threads and ``--connections``
   connections: throughput, latency and errors (non-2xx answers, socket errors).
2. A second ``wrk`` starts at once; ``--term-after`` seconds in, the server gets SIGTERM
   while it is under load. The script checks that the server shuts down cleanly (the
   lifespan completes, no traceback; uvicorn then re-raises the SIGTERM, so the status
   is -15) and that every decision id answered 200 in either run (wrk's Lua script
   writes each one to a file) is in the decision log. wrk's socket errors in this run
   are the connections refused once the server has closed its socket.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

INTENTS = Path(__file__).resolve().parent.parent / "intents"
LAUNCH = (
    "import sys\n"
    "from modeltriage import HashingEncoder\n"
    "from modeltriage.cli.main import main\n"
    "sys.exit(main(['serve', '--intents', sys.argv[1], '--port', sys.argv[2]],"
    " encoder=HashingEncoder()))\n"
)
# Each wrk thread writes the id of every decision answered 200 to its own file.
LUA = """
-- thread_id is a global: setup() sets it in each thread's own Lua state.
local counter = 0
local out = nil
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function init(args)
  out = io.open(args[1] .. "-" .. thread_id .. ".ids", "w")
  out:setvbuf("line")
end

local texts = {
  "I was charged twice for my order",
  "where is my parcel",
  "my python script throws a KeyError",
  "what are your opening hours on sunday",
  "I want a refund for a broken blender",
  "how do I reset my password",
}

function request()
  counter = counter + 1
  local text = texts[(counter % #texts) + 1] .. " " .. thread_id .. "-" .. counter
  return wrk.format("POST", "/route", {["Content-Type"] = "application/json"},
                    '{"text": "' .. text .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    local id = body:match('"id":"(%x+)"')
    if id then out:write(id, "\\n") end
  end
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wrk(
    url: str, seconds: float, threads: int, connections: int, script: Path, ids: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
            "--",
            ids,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _parse(report: str) -> dict[str, object]:
    """The figures of a wrk report."""
    found: dict[str, object] = {}
    if match := re.search(r"(\d+) requests in ([\d.]+)(\w+)", report):
        found["requests"] = int(match.group(1))
    if match := re.search(r"Requests/sec:\s+([\d.]+)", report):
        found["requests_per_s"] = float(match.group(1))
    for pct in ("50", "90", "99"):
        if match := re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", report):
            value, unit = float(match.group(1)), match.group(2)
            found[f"p{pct}_ms"] = value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    found["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    found["socket_errors"] = (
        dict(zip(["connect", "read", "write", "timeout"], map(int, match.groups()), strict=True))
        if match
        else {}
    )
    return found


def _ids(prefix: Path) -> list[str]:
    ids: list[str] = []
    for path in prefix.parent.glob(prefix.name + "-*.ids"):
        ids += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return ids


def _missing(db: Path, ids: list[str]) -> int:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TEMP TABLE acked (id TEXT PRIMARY KEY)")
        conn.executemany("INSERT OR IGNORE INTO acked VALUES (?)", [(i,) for i in ids])
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM acked WHERE id NOT IN (SELECT decision_id FROM decisions)"
        ).fetchone()
    return int(count)


def run(seconds: float, threads: int, connections: int, term_after: float) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="saturation-"))
    intents = work / "intents"
    shutil.copytree(INTENTS, intents, ignore=shutil.ignore_patterns(".log", ".index*"))
    db = work / "decisions.sqlite3"
    script = work / "route.lua"
    script.write_text(LUA)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "MODELTRIAGE_LOG_URL": str(db),
    }
    server_log = (work / "serve.err").open("w")
    server = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(intents), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=server_log,
    )
    try:
        for _ in range(1800):
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        saturation = _wrk(url, seconds, threads, connections, script, str(work / "sat"))
        saturation_report, _ = saturation.communicate(timeout=seconds + 120)
        under_term = _wrk(url, term_after + 10, threads, connections, script, str(work / "term"))
        time.sleep(term_after)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        exit_status = server.wait(60)
        exit_s = time.monotonic() - signalled
        term_report, _ = under_term.communicate(timeout=term_after + 120)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
        server_log.close()
    stderr = (work / "serve.err").read_text(errors="replace")
    saturated_ids = _ids(work / "sat")
    term_ids = _ids(work / "term")
    result = {
        "server": "modeltriage serve, 1 worker, fake encoder (HashingEncoder), shipped intents",
        "log": health.get("log"),
        "wrk": f"-t{threads} -c{connections} -d{seconds:g}s, POST /route, a new text each",
        "saturation": _parse(saturation_report),
        "saturation_ids_answered": len(saturated_ids),
        "saturation_ids_missing_from_log": _missing(db, saturated_ids),
        "sigterm_after_s": term_after,
        "under_sigterm": _parse(term_report),
        "sigterm_ids_answered": len(term_ids),
        "sigterm_ids_missing_from_log": _missing(db, term_ids),
        # Uvicorn re-raises the SIGTERM it caught once it has shut down: -15 is its
        # normal end, as 0 is after SIGINT.
        "exit_status": exit_status,
        "shutdown_complete": "Application shutdown complete." in stderr,
        "clean_exit": exit_status in (0, -signal.SIGTERM)
        and "Application shutdown complete." in stderr
        and "Traceback" not in stderr,
        "exit_took_s": round(exit_s, 2),
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--term-after", type=float, default=5.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed")
    result = run(args.seconds, args.threads, args.connections, args.term_after)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
