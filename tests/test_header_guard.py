"""Slow and endless request headers against a real `modeltriage serve` (issue 12).

Uvicorn waits for a request line and headers without a deadline; `serve` runs it with
http/header_guard.py's protocol: a connection that has not finished its headers
``--timeout-headers`` seconds after connecting (or after its previous response) gets a
408 and is closed, and headers over 64 KiB get a 431. Meanwhile the service answers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from modeltriage import Router
from modeltriage.http.app import create_app
from modeltriage.http.header_guard import HEADER_TIMEOUT_ENV
from tests.conftest import ROUTER_YAML, TINY_INTENTS, write_intents
from tests.test_serve_process import START_S, Server, free_port, wait_for

TIMEOUT_S = 2.0
TRICKLERS = 150


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base: Path = tmp_path_factory.mktemp("header-guard")
    intents = write_intents(base / "intents", TINY_INTENTS, ROUTER_YAML)
    started = Server(intents, "--timeout-headers", str(TIMEOUT_S))
    try:
        wait_for(started.up, START_S, "the server to start")
        yield started
    finally:
        started.stop()


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _trickle(sock: socket.socket, stop: threading.Event, closed_after: list[float]) -> None:
    """Send a header byte every 0.2 s until the server closes the connection."""
    started = time.monotonic()
    try:
        sock.sendall(b"POST /route HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            sock.sendall(b"X")
            time.sleep(0.2)
    except OSError:
        closed_after.append(time.monotonic() - started)


def test_trickled_headers_are_cut_off_and_the_service_still_answers(server: Server) -> None:
    stop = threading.Event()
    closed_after: list[float] = []
    sockets = [_connect(server) for _ in range(TRICKLERS)]
    threads = [
        threading.Thread(target=_trickle, args=(s, stop, closed_after), daemon=True)
        for s in sockets
    ]
    for thread in threads:
        thread.start()
    try:
        # While they trickle, the service answers others.
        r = httpx.post(f"{server.url}/route", json={"text": "refund please"}, timeout=10)
        assert r.status_code == 200
        wait_for(lambda: len(closed_after) == TRICKLERS, TIMEOUT_S + 20, "every trickler cut off")
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for sock in sockets:
            sock.close()
    # Cut off at the deadline (a send may take a moment to fail after the close).
    assert min(closed_after) >= TIMEOUT_S * 0.9, sorted(closed_after)[:5]
    assert max(closed_after) <= TIMEOUT_S + 15, sorted(closed_after)[-5:]
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_an_idle_connection_gets_a_408_and_is_closed(server: Server) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        answer = _answer(sock)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert TIMEOUT_S * 0.9 <= took <= TIMEOUT_S + 10


def test_headers_over_64_kib_get_a_431(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for i in range(100):
                sock.sendall(f"X-Filler-{i}: {'a' * 1000}\r\n".encode())
        except OSError:
            pass  # closed by the server part-way, as it should be
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def test_keep_alive_requests_and_slow_handlers_are_not_cut(server: Server) -> None:
    """The deadline runs only while headers are owed: a kept-alive connection's next
    request, sent later than the deadline after connecting, is served."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(TIMEOUT_S * 0.6)
        assert client.post("/route", json={"text": "refund please"}).status_code == 200


def test_a_bad_header_timeout_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from modeltriage.cli.main import main

    for bad in ("0", "-1", "nan", "1e9"):
        assert main(["serve", "--timeout-headers", bad]) == 1
        assert "--timeout-headers" in capsys.readouterr().err


def test_workers_can_import_the_protocol_by_name() -> None:
    """Workers of `serve --workers N` import the protocol by name."""
    from uvicorn.importer import import_from_string

    from modeltriage.http.header_guard import PROTOCOL, GuardedProtocol

    assert import_from_string(PROTOCOL) is GuardedProtocol


@pytest.mark.parametrize("protocol", ["GuardedH11Protocol", "GuardedProtocol"])
def test_both_parsers_cut_off_an_idle_connection(
    protocol: str, fake_router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain uvicorn parses with h11, uvicorn[standard] with httptools: both are guarded."""
    monkeypatch.setenv(HEADER_TIMEOUT_ENV, "0.5")
    port = free_port()
    config = uvicorn.Config(
        create_app(router=fake_router),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http=f"modeltriage.http.header_guard:{protocol}",
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: running.started, 20, "uvicorn to start")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            time.sleep(0.3)
            assert client.get("/healthz").status_code == 200  # kept alive, not cut
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            started = time.monotonic()
            answer = _answer(sock)
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
            assert time.monotonic() - started < 5
    finally:
        running.should_exit = True
        thread.join(timeout=10)
