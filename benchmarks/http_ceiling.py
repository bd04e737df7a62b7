#!/usr/bin/env python3
"""What bounds HTTP throughput: the same load against four servers, from an endpoint that
does nothing to ``POST /route`` with the real encoder, in one run.

Run from the repository root, on an otherwise idle machine if you can:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/http_ceiling.py [--duration 10]
        [--concurrency 1,8,32] [--json out.json]

Servers, each its own process on loopback, loaded by wrk (Debian's package) for
``--duration`` seconds at each concurrency:

1. ``bare FastAPI``: uvicorn (httptools) serving one ``POST /noop`` that validates the
   same JSON body as ``/route`` and returns a constant: the HTTP stack's own ceiling.
2. ``service, GET /healthz``: ``modeltriage serve`` on the shipped intents: the service's
   middleware stack (request ids, body guard, metrics, auth) around a handler that routes
   nothing.
3. ``service, POST /route, fake encoder``: the same service routing every request, with the
   deterministic ``HashingEncoder`` (hashed words, no model) instead of MiniLM: the
   router, FAISS and the policy without the encoder.
4. ``service, POST /route, onnx-int8``: the default, as served.

All ``/route`` servers run with the query cache and the decision log off, so every
request is routed and nothing else competes; the request bodies cycle through
examples/traffic/support_day.jsonl. The gaps between rows are what each layer costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, library_versions, machine_info, render_table, write_json
from latency import free_port
from serving import LUA, wrk

BIN = Path(sys.executable).parent
TRAFFIC = REPO / "examples" / "traffic" / "support_day.jsonl"

BARE_APP = """
from fastapi import FastAPI
from pydantic import BaseModel


class Body(BaseModel):
    text: str


app = FastAPI()


@app.post("/route")
def noop(body: Body) -> dict[str, object]:
    return {"intent": None, "tier": "small", "model": "none", "reason": "noop"}
"""


def _wait(port: int, path: str = "/healthz") -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"the server on port {port} did not start")


def _load(
    argv: list[str], env: dict[str, str], path: str, script: Path | None, args: argparse.Namespace
) -> list[dict[str, Any]]:
    port = free_port()
    server = subprocess.Popen(
        [*argv, "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(port, "/docs" if "bare_app:app" in argv else "/healthz")
        return [wrk(port, script, c, args.duration, path) for c in args.levels]
    finally:
        server.terminate()
        server.wait(30)


def _intents(target: Path, backend: str) -> Path:
    import yaml

    shutil.copytree(
        REPO / "intents", target, ignore=shutil.ignore_patterns(".index", ".log", "*.jsonl")
    )
    config = yaml.safe_load((target / "router.yaml").read_text(encoding="utf-8"))
    config["encoder"] = {"backend": backend}
    config["serving"] = {"query_cache_size": 0}
    config["log"] = {"url": None}
    (target / "router.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return target


def run(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from modeltriage import HashingEncoder
    from modeltriage.loading import build_index

    texts = [json.loads(line)["text"] for line in TRAFFIC.open(encoding="utf-8")]
    script = work / "route.lua"
    bodies = ", ".join(json.dumps(json.dumps({"text": t})) for t in texts)
    script.write_text(LUA % bodies, encoding="utf-8")
    bare = work / "bare_app.py"
    bare.write_text(textwrap.dedent(BARE_APP), encoding="utf-8")
    fake = _intents(work / "fake", "torch")  # the fake's id reads as the torch backend's
    build_index(fake, HashingEncoder())
    real = _intents(work / "real", "onnx-int8")
    build_index(real)
    serve = [str(BIN / "modeltriage"), "serve", "--no-build"]
    servers: list[tuple[str, list[str], dict[str, str], str, Path | None]] = [
        (
            "bare FastAPI, POST /route (no-op)",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bare_app:app",
                "--http",
                "httptools",
                "--log-level",
                "warning",
                "--no-access-log",
                "--app-dir",
                str(work),
            ],
            {},
            "/route",
            script,
        ),
        ("service, GET /healthz", [*serve, "--intents", str(real)], {}, "/healthz", None),
        (
            "service, POST /route, fake encoder",
            [*serve, "--intents", str(fake)],
            {"MODELTRIAGE_ENCODER_FACTORY": "modeltriage:HashingEncoder"},
            "/route",
            script,
        ),
        ("service, POST /route, onnx-int8", [*serve, "--intents", str(real)], {}, "/route", script),
    ]
    rows = []
    for name, argv, env, path, lua in servers:
        for result in _load(argv, env, path, lua, args):
            rows.append({"server": name, **result})
            print(
                f"  {name}, {result['concurrency']} clients: {result['rps']:.0f} req/s",
                file=sys.stderr,
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    args.levels = [int(c) for c in args.concurrency.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="http-ceiling-"))
    try:
        rows = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = render_table(
        ["server", "clients", "req/s", "p50 ms", "p99 ms", "errors"],
        [
            [
                r["server"],
                r["concurrency"],
                f"{r['rps']:.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                r["errors"],
            ]
            for r in rows
        ],
    )
    print(json.dumps(machine_info()))
    print(table)
    if args.json:
        write_json(
            args.json, {"machine": machine_info(), "versions": library_versions(), "rows": rows}
        )


if __name__ == "__main__":
    main()
