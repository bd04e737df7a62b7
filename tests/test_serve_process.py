"""`modeltriage serve` as a real process (issue 12): SIGHUP and --watch reload, a broken
edit never takes the service down, --keep-last-good, SIGTERM drains and flushes, and
kill -9 under load loses no acknowledged decision with log.durability: ack.

The server is the real CLI and uvicorn in a subprocess, with the fake encoder injected
through ``main(encoder=...)``, so no model is loaded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modeltriage import HashingEncoder
from modeltriage.cli.main import main
from modeltriage.log.sqlite import SQLiteStore
from tests.conftest import ROUTER_YAML, TINY_INTENTS, write_intents

LAUNCH = (
    "import sys\n"
    "from modeltriage import HashingEncoder\n"
    "from modeltriage.cli.main import main\n"
    "sys.exit(main(['serve', '--intents', sys.argv[1], '--port', sys.argv[2], *sys.argv[3:]],"
    " encoder=HashingEncoder()))\n"
)
BILLING = "name: billing\ndifficulty: hard\nexemplars:\n  - my invoice shows a double charge\n"
BROKEN = "name: refund\ndifficulty: moderate\nexemplars:\n  - refund please\n  bad: [\n"
START_S = 90  # a loaded 2-core machine may take this long to import and build


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    def __init__(self, intents: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = intents.parent / f"serve-{self.port}.err"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, str(intents), str(self.port), *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited {self.process.returncode}: {self.stderr}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def health(self) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=10).json()
        return found

    def route(self, text: str) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/route", json={"text": text}, timeout=10)
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def intents(tmp_path: Path) -> Path:
    yaml = ROUTER_YAML + "log: {url: decisions.db}\n"
    return write_intents(tmp_path / "intents", TINY_INTENTS, yaml)


@pytest.fixture
def serve(intents: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str, wait: bool = True) -> Server:
        server = Server(intents, *args)
        started.append(server)
        if wait:
            wait_for(server.up, START_S, "the server to start")
        return server

    yield start
    for server in started:
        server.stop()


def reloads(server: Server) -> int:
    count: int = server.health()["reload"]["reloads"]
    return count


def test_sighup_reloads_and_a_broken_edit_keeps_serving(
    serve: Callable[..., Server], intents: Path
) -> None:
    server = serve()
    (intents / "billing.yaml").write_text(BILLING)
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: reloads(server) == 1, 60, "the SIGHUP reload")
    assert server.route("my invoice shows a double charge")["intent"] == "billing"
    version = server.health()["index_version"]

    (intents / "refund.yaml").write_text(BROKEN)
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: server.health()["reload"]["failed_reloads"] == 1, 60, "the failed reload")
    health = server.health()
    assert health["reload"]["last_error"].startswith("refund.yaml:5:")
    assert health["index_version"] == version and server.process.poll() is None
    assert server.route("refund please")["intent"] == "refund"
    assert "reload (SIGHUP) failed" in server.stderr  # and in the log


def test_watch_reloads_on_an_intent_file_change(
    serve: Callable[..., Server], intents: Path
) -> None:
    server = serve("--watch")
    assert server.health()["reload"]["watch"] is True
    (intents / "billing.yaml").write_text(BILLING)
    wait_for(lambda: reloads(server) == 1, 60, "the watch reload")
    assert server.route("my invoice shows a double charge")["intent"] == "billing"
    # Files of the index and the log are not intent files: routing writes the log, and
    # nothing reloads.
    server.route("refund please")
    time.sleep(2)
    assert reloads(server) == 1


def test_keep_last_good_starts_on_the_last_index_and_says_so(
    serve: Callable[..., Server], intents: Path
) -> None:
    first = serve()
    version = first.health()["index_version"]
    first.stop()
    (intents / "refund.yaml").write_text(BROKEN)
    refused = serve(wait=False)
    assert refused.process.wait(START_S) == 1
    assert "refund.yaml:5:" in refused.stderr and "Traceback" not in refused.stderr

    server = serve("--keep-last-good")
    assert "serving the last good index" in server.stderr
    health = server.health()
    assert health["reload"]["serving"] == "last-good"
    assert health["reload"]["last_error"].startswith("refund.yaml:5:")
    assert health["index_version"] == version
    (intents / "refund.yaml").write_text(BROKEN.replace("  bad: [\n", ""))
    server.process.send_signal(signal.SIGHUP)
    wait_for(lambda: server.health()["reload"]["serving"] == "intents", 60, "the reload")


def test_serve_no_build_on_a_stale_index_says_what_to_do(
    intents: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoder = HashingEncoder()
    assert main(["build", "--intents", str(intents)], encoder=encoder) == 0
    (intents / "billing.yaml").write_text(BILLING)
    assert main(["serve", "--intents", str(intents), "--no-build"], encoder=encoder) == 1
    err = capsys.readouterr().err
    assert "stale" in err and "modeltriage build" in err and "--keep-last-good" in err
    assert len(err.strip().splitlines()) == 1


def hammer(url: str, stop: threading.Event, acknowledged: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = client.post("/route", json={"text": f"refund please {i}"})
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 200:
                acknowledged.append(r.json()["id"])


def under_load(server: Server, seconds: float, end: Callable[[], None]) -> list[str]:
    stop = threading.Event()
    acknowledged: list[str] = []
    workers = [
        threading.Thread(target=hammer, args=(server.url, stop, acknowledged)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    end()
    stop.set()
    for worker in workers:
        worker.join(30)
    return acknowledged


def missing(intents: Path, ids: list[str]) -> list[str]:
    store = SQLiteStore(intents / "decisions.db")
    try:
        return [i for i in ids if store.decision(i) is None]
    finally:
        store.close()


def test_kill_9_under_load_loses_no_acknowledged_decision(
    serve: Callable[..., Server], intents: Path
) -> None:
    server = serve()
    assert server.health()["log"]["durability"] == "ack"
    acknowledged = under_load(server, 3.0, server.process.kill)
    server.process.wait(30)
    assert len(acknowledged) > 20, "the load did not run"
    assert missing(intents, acknowledged) == []


def test_sigterm_drains_and_flushes_an_async_log(
    serve: Callable[..., Server], intents: Path
) -> None:
    yaml = ROUTER_YAML + "log: {url: decisions.db, durability: async, flush_interval_s: 30}\n"
    (intents / "router.yaml").write_text(yaml)
    server = serve()
    assert server.health()["log"]["loss_window_s"] == 30
    acknowledged = under_load(server, 2.0, lambda: server.process.send_signal(signal.SIGTERM))
    assert server.process.wait(30) in (0, -signal.SIGTERM)
    assert len(acknowledged) > 20
    assert missing(intents, acknowledged) == []


def hammer_events(url: str, stop: threading.Event, acknowledged: list[tuple[str, str]]) -> None:
    """Route, then report a failover and an answer check against each decision; keep the
    (kind, decision id) of every event answered 200."""
    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = client.post("/route", json={"text": f"refund please {i}"})
                if r.status_code != 200:
                    continue
                decision = r.json()
                failed = {"decision_id": decision["id"], "failed": [decision["model"]]}
                if client.post("/next-model", json=failed).status_code == 200:
                    acknowledged.append(("failover", decision["id"]))
                answer = {"answer": "I am not sure.", "decision_id": decision["id"]}
                if client.post("/escalate", json=answer).status_code == 200:
                    acknowledged.append(("escalation", decision["id"]))
            except httpx.HTTPError:
                return  # the server is gone


def test_kill_9_under_load_loses_no_acknowledged_event(
    serve: Callable[..., Server], intents: Path
) -> None:
    """With log.durability: ack, failover and answer-check events are committed before
    their answer, like decisions: kill -9 loses none that was answered."""
    server = serve()
    stop = threading.Event()
    acknowledged: list[tuple[str, str]] = []
    workers = [
        threading.Thread(target=hammer_events, args=(server.url, stop, acknowledged))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    time.sleep(3.0)
    server.process.kill()
    stop.set()
    for worker in workers:
        worker.join(30)
    server.process.wait(30)
    assert len(acknowledged) > 20, "the load did not run"
    store = SQLiteStore(intents / "decisions.db")
    try:
        lost = [
            (kind, decision_id)
            for kind, decision_id in acknowledged
            if kind not in {e.kind for e in store.events(decision_id=decision_id)}
        ]
    finally:
        store.close()
    assert lost == [], f"{len(lost)} of {len(acknowledged)} acknowledged events lost"
