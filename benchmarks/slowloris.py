#!/usr/bin/env python3
"""Slowloris on the headers: what a real ``modeltriage serve`` does with clients that
connect and trickle header bytes forever.

Run from the repository root:

    PYTHONPATH=src .venv/bin/python benchmarks/slowloris.py [--connections 1000] [--seconds 30]

It starts ``modeltriage serve`` (the real CLI and uvicorn in a subprocess, fake encoder,
default flags, so ``--timeout-headers 10``), opens ``--connections`` connections that
each send a request line and then one header byte every second, and for ``--seconds``
samples, once a second, how many of them the server still holds open and how long
``GET /healthz`` takes on a fresh connection. ``--src DIR`` serves another checkout's
sources (e.g. a tree without the header deadline, for the before figures).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from modeltriage import __version__

INTENTS = Path(__file__).resolve().parent.parent / "intents"
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


def _open(port: int, count: int) -> list[socket.socket]:
    opened = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /route HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.setblocking(False)
        opened.append(sock)
    return opened


def _still_open(sockets: list[socket.socket]) -> list[socket.socket]:
    """Send one more header byte on each; keep those the server has not closed."""
    alive = []
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    readable = {key.fileobj for key, _ in selector.select(timeout=0)}
    selector.close()
    for sock in sockets:
        try:
            if sock in readable and not sock.recv(4096):
                raise ConnectionError("closed by the server")
            sock.send(b"x")
            alive.append(sock)
        except (OSError, ConnectionError):
            sock.close()
    return alive


def run(connections: int, seconds: float, src: str | None) -> dict[str, object]:
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="slowloris-"))
    intents = work / "intents"
    subprocess.run(["cp", "-r", str(INTENTS), str(intents)], check=True)
    paths = [src] if src else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, *sys.path])}
    server = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(intents), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1800):
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        sockets = _open(port, connections)
        started = time.monotonic()
        samples = []
        while (elapsed := time.monotonic() - started) < seconds:
            sockets = _still_open(sockets)
            t0 = time.perf_counter()
            try:
                status = httpx.get(f"{url}/healthz", timeout=10).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            samples.append(
                {
                    "t_s": round(elapsed, 1),
                    "held_open": len(sockets),
                    "healthz_ms": round((time.perf_counter() - t0) * 1000, 1),
                    "healthz": status,
                }
            )
            time.sleep(1.0)
        for sock in sockets:
            sock.close()
    finally:
        server.terminate()
        server.wait(30)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    latencies = [s["healthz_ms"] for s in samples if s["healthz"] == 200]
    return {
        "modeltriage": __version__,
        "src": src or "this checkout",
        "connections": connections,
        "seconds": seconds,
        "held_open_at_end": samples[-1]["held_open"] if samples else None,
        "first_second_all_closed": next((s["t_s"] for s in samples if s["held_open"] == 0), None),
        "healthz_ok": f"{len(latencies)}/{len(samples)}",
        "healthz_p50_ms": statistics.median(latencies) if latencies else None,
        "healthz_max_ms": max(latencies) if latencies else None,
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--src", help="serve the sources of this directory instead")
    args = parser.parse_args()
    result = run(args.connections, args.seconds, args.src)
    samples = result.pop("samples")
    print(json.dumps(result, indent=2))
    assert isinstance(samples, list)
    for sample in samples[:: max(1, len(samples) // 10)]:
        print(json.dumps(sample))


if __name__ == "__main__":
    main()
