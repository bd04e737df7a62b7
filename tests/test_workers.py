"""`modeltriage serve --workers N`: real uvicorn worker processes sharing one built index
and one decision log (SQLite; PostgreSQL when MODELTRIAGE_TEST_POSTGRES_URL is set).

The workers run the fake encoder, named by $MODELTRIAGE_ENCODER_FACTORY, since an encoder
object cannot cross into another process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modeltriage.cli.main import main
from modeltriage.log.open import open_store

from .conftest import REPO
from .test_decisionlog import postgres_url  # noqa: F401  (a fixture)

START_TIMEOUT_S = 180.0  # two cores shared by many processes: startup can be slow
FAKE = "modeltriage.core.encoders:HashingEncoder"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Served:
    def __init__(self, intents: Path, log_url: str, workers: int = 2) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "src"),
            "MODELTRIAGE_ENCODER_FACTORY": FAKE,
            "MODELTRIAGE_LOG_URL": log_url,
            "HF_HUB_OFFLINE": "1",
        }
        command = [sys.executable, "-m", "modeltriage.cli", "serve", "--intents", str(intents)]
        command += ["--workers", str(workers), "--port", str(self.port)]
        self.output = intents.parent / "serve.out"
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        self.client = httpx.Client(base_url=self.base, timeout=30.0)
        self.workers = workers

    def worker_pids(self) -> list[int]:
        """Workers uvicorn started, in order (its own log names them)."""
        found = re.findall(r"Started server process \[(\d+)\]", self.output.read_text())
        return [int(pid) for pid in found]

    def wait_ready(self, started: int | None = None) -> None:
        """Wait until ``started`` workers (default: ``workers``) have started up."""
        want = self.workers if started is None else started
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output.read_text()
            if self.output.read_text().count("Application startup complete") >= want:
                return
            time.sleep(0.5)
        raise AssertionError(f"workers did not start:\n{self.output.read_text()}")

    def route(self, text: str) -> str:
        response = self.client.post("/route", json={"text": text})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@pytest.fixture
def served(tiny_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    url = getattr(request, "param", None) or str(tmp_path / "decisions.db")
    server = Served(tiny_dir, url)
    try:
        server.wait_ready()
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def _every_id_logged(server: Served, log_url: str) -> None:
    texts = [f"refund my order number {n}" for n in range(24)]
    ids: list[str] = []
    lock = threading.Lock()

    def send(chunk: list[str]) -> None:
        with httpx.Client(base_url=server.base, timeout=30.0) as client:
            for text in chunk:
                response = client.post("/route", json={"text": text})
                assert response.status_code == 200, response.text
                with lock:
                    ids.append(response.json()["id"])

    threads = [threading.Thread(target=send, args=(texts[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == len(texts)
    # Whichever worker answers (a new connection each time), a decision just routed can
    # be looked up, given feedback and failed over, though the worker that routed it may
    # still hold it in its queue.
    for n in range(6):
        decision_id = server.route(f"my python script throws a KeyError {n}")
        ids.append(decision_id)
        assert httpx.get(f"{server.base}/decisions/{decision_id}").status_code == 200
        decision_id = server.route(f"I want a refund {n}")
        ids.append(decision_id)
        feedback = {"decision_id": decision_id, "quality": 1.0}
        assert httpx.post(f"{server.base}/feedback", json=feedback).status_code == 201
        decision_id = server.route(f"refund my purchase please {n}")
        ids.append(decision_id)
        failed = {"decision_id": decision_id, "failed": ["mid-a"]}
        assert httpx.post(f"{server.base}/next-model", json=failed).status_code == 200
    assert server.stop() == 0
    store = open_store(log_url)
    try:
        logged = {entry.decision_id for entry in store.decisions()}
    finally:
        store.close()
    assert set(ids) <= logged


def test_two_workers_share_the_sqlite_log(served: Served, tmp_path: Path) -> None:
    _every_id_logged(served, str(tmp_path / "decisions.db"))


def test_two_workers_share_the_postgres_log(
    tiny_dir: Path,
    postgres_url: str,  # noqa: F811
) -> None:
    server = Served(tiny_dir, postgres_url)
    try:
        server.wait_ready()
        _every_id_logged(server, postgres_url)
    finally:
        if server.process.poll() is None:
            server.stop()


def test_a_killed_worker_is_replaced_and_the_other_keeps_serving(served: Served) -> None:
    victim = served.worker_pids()[0]
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=served.base, timeout=30.0) as client:
            while not stop.is_set():
                try:
                    client.post("/route", json={"text": "when do you open"})
                except httpx.TransportError as exc:  # a request the dead worker held
                    failures.append(type(exc).__name__)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        # The survivor answers at once.
        for n in range(5):
            served.route(f"refund my order {n}")
        served.wait_ready(started=3)  # the supervisor started a replacement
        assert not _alive(victim)
        replacement = served.worker_pids()[2]
        assert _alive(replacement)
    finally:
        stop.set()
        worker.join()
    assert "died" in served.output.read_text()
    assert len(failures) <= 2, failures
    assert served.stop() == 0


@pytest.mark.parametrize("workers", ["0", "-3", "65", str(10**30)])
def test_worker_count_out_of_range_is_one_line(
    tiny_dir: Path, workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--intents", str(tiny_dir), "--workers", workers]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--workers must be from 1 to 64" in err


def test_an_injected_encoder_cannot_reach_workers(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modeltriage import HashingEncoder

    args = ["serve", "--intents", str(tiny_dir), "--workers", "2"]
    assert main(args, encoder=HashingEncoder()) == 1
    assert "MODELTRIAGE_ENCODER_FACTORY" in capsys.readouterr().err


def test_a_bad_encoder_factory_is_one_line(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELTRIAGE_ENCODER_FACTORY", "no.such.module:thing")
    assert main(["serve", "--intents", str(tiny_dir), "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "names no importable callable" in err


def test_a_worker_without_its_settings_says_how_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modeltriage.errors import InputError
    from modeltriage.http.app import INTENTS_ENV, app_from_env

    monkeypatch.delenv(INTENTS_ENV, raising=False)
    with pytest.raises(InputError, match="serve --workers N"):
        app_from_env()


@pytest.mark.parametrize("flag", ["--watch", "--keep-last-good"])
def test_reloading_flags_are_refused_with_workers(
    tiny_dir: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--intents", str(tiny_dir), "--workers", "2", flag]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--watch and --keep-last-good serve one process" in err


def test_a_worker_sweeps_the_samples_directory_serve_was_given(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modeltriage.http.app import INTENTS_ENV, SAMPLES_ENV, app_from_env

    monkeypatch.setenv("MODELTRIAGE_ENCODER_FACTORY", "modeltriage:HashingEncoder")
    monkeypatch.setenv(INTENTS_ENV, str(tiny_dir))
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "mine.jsonl").write_text('{"text": "what are your opening hours"}\n')
    monkeypatch.setenv(SAMPLES_ENV, str(samples))
    from modeltriage import HashingEncoder
    from modeltriage.loading import build_index

    build_index(tiny_dir, HashingEncoder())
    from fastapi.testclient import TestClient

    with TestClient(app_from_env()) as client:
        listed = client.get("/explore/samples")
    assert listed.status_code == 200, listed.text
    assert "mine.jsonl" in listed.text
