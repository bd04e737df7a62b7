"""A real uvicorn process on loopback: API keys from its environment, and a chunked body
far over the cap is refused while it streams, without the server's memory growing."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import REPO, ROUTER_YAML, TINY_INTENTS, write_intents

ROUTE_KEY = "real-route-key-0123456789"
ADMIN_KEY = "real-admin-key-0123456789"
CAP = 65_536
SERVER = """
import sys, uvicorn
from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.http.app import create_app
router = Router.in_memory(load_intents(sys.argv[1]), HashingEncoder(), exact_numpy=True)
uvicorn.run(create_app(router=router), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="warning", timeout_keep_alive=5)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    yaml = ROUTER_YAML + f"limits: {{max_body_bytes: {CAP}}}\n"
    intents = write_intents(tmp_path_factory.mktemp("real") / "intents", TINY_INTENTS, yaml)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "MODELTRIAGE_API_KEYS": ROUTE_KEY,
        "MODELTRIAGE_ADMIN_KEYS": ADMIN_KEY,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(intents), str(port)], env=env, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not start within 60 s")
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_keys_over_a_real_socket(server: tuple[str, int]) -> None:
    base, _ = server
    ask = {"text": "when do you open on sunday"}
    with httpx.Client(base_url=base, timeout=10) as http:
        r = http.post("/route", json=ask)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = http.post("/route", json=ask, headers={"authorization": f"Bearer {ROUTE_KEY}"})
        assert r.status_code == 200 and r.headers["x-request-id"]
        mark = "/health/models/small-a/unhealthy"
        r = http.post(mark, headers={"authorization": f"Bearer {ROUTE_KEY}"})
        assert r.status_code == 403
        r = http.post(mark, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200
        r = http.delete("/health/models/small-a", headers={"authorization": f"Bearer {ADMIN_KEY}"})
        assert r.json()["cleared"] is True


def test_a_streamed_body_is_cut_at_the_cap(server: tuple[str, int]) -> None:
    base, pid = server
    port = int(base.rsplit(":", 1)[1])
    before = rss_kib(pid)
    chunk = b"a" * 65_536
    answer = b""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {ROUTE_KEY}\r\n".encode()
            + b"transfer-encoding: chunked\r\n\r\n"
        )
        try:
            while sent < 200 * 1024 * 1024 and not answer:  # up to 200 MB
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    answer = sock.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not answer:
            with contextlib.suppress(ConnectionResetError):
                answer = sock.recv(4096)
    grown_mib = (rss_kib(pid) - before) / 1024
    print(f"\nstreamed body: {sent} bytes sent before the 413, RSS grew {grown_mib:.1f} MiB")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 16 * 1024 * 1024, f"the server read {sent} bytes before refusing"
    assert grown_mib < 20, f"RSS grew by {grown_mib:.0f} MiB"
    # The server goes on serving.
    r = httpx.post(
        f"{base}/route",
        json={"text": "hi there"},
        headers={"authorization": f"Bearer {ROUTE_KEY}"},
        timeout=10,
    )
    assert r.status_code == 200
