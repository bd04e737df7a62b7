"""log.durability (issue 12, defect 5): with ``ack`` a decision is committed before the
caller gets it back, concurrent callers share commits, and a decision that cannot be
committed is an error (503), never a silent loss. Fake encoder, memory and SQLite stores."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.errors import ConfigError, LogStoreError
from modeltriage.http.app import create_app
from modeltriage.log.entries import EventEntry, LogEntry
from modeltriage.log.memory import MemoryStore
from modeltriage.log.sqlite import SQLiteStore
from modeltriage.log.writer import DecisionLogger
from tests.conftest import ROUTER_YAML, TINY_INTENTS, write_intents


class CountingStore(MemoryStore):
    """Counts commits (write calls); ``fail`` makes every write fail."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.commits = 0
        self.fail = fail

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        if self.fail:
            raise LogStoreError("disk unplugged", self.url)
        self.commits += 1
        super().write_decisions(entries)


def test_ack_commits_before_returning(tmp_path: Path, fake_router: Router) -> None:
    decision = fake_router.route("refund please", log=False)
    logger = DecisionLogger(SQLiteStore(tmp_path / "log.db"), durability="ack")
    with logger:
        assert logger.log(decision, "refund please")
        # No flush: the row is in the database the moment log() returns.
        assert logger.store.decision(decision.id) is not None
        assert logger.loss_window_s == 0


def test_async_returns_at_once_and_states_its_window(fake_router: Router) -> None:
    decision = fake_router.route("refund please", log=False)
    store = CountingStore()
    with DecisionLogger(store, durability="async", flush_interval_s=5.0) as logger:
        assert logger.log(decision, "refund please")
        assert store.decision(decision.id) is None and logger.pending == 1
        assert logger.loss_window_s == 5.0
    assert store.commits == 1  # close flushed it


def test_concurrent_ack_callers_share_commits(fake_router: Router) -> None:
    decision = fake_router.route("refund please", log=False)
    store = CountingStore()
    with DecisionLogger(store, durability="ack") as logger:

        def work(slot: int) -> None:
            for i in range(50):
                logger.log(decision.model_copy(update={"id": f"{slot}-{i}"}), "t")

        threads = [threading.Thread(target=work, args=(slot,)) for slot in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(store.decisions()) == 400
    assert store.commits <= 400


def test_ack_raises_when_the_store_cannot_commit(fake_router: Router) -> None:
    decision = fake_router.route("refund please", log=False)
    logger = DecisionLogger(
        CountingStore(fail=True), durability="ack", ack_timeout_s=0.2, retry_initial_s=0.01
    )
    with pytest.raises(LogStoreError, match=r"not committed within 0\.2 s"):
        logger.log(decision, "refund please")
    with pytest.raises(LogStoreError):
        logger.close(timeout=1)


def test_ack_with_a_full_queue_is_an_error_not_a_silent_drop(fake_router: Router) -> None:
    decision = fake_router.route("refund please", log=False)
    logger = DecisionLogger(CountingStore(fail=True), durability="ack", queue_size=1)
    logger.submit(LogEntry.from_decision(decision, "t"))
    with pytest.raises(LogStoreError, match="queue is full"):
        logger.log(decision.model_copy(update={"id": "second"}), "t")
    with pytest.raises(LogStoreError):
        logger.close(timeout=1)


def test_a_route_that_cannot_be_logged_is_a_503(tiny_dir: Path) -> None:
    store = CountingStore(fail=True)
    router = Router.in_memory(load_intents(tiny_dir), HashingEncoder(), log=store)
    assert router.logger is not None
    router.logger.ack_timeout_s = 0.2
    with TestClient(create_app(router=router)) as client:
        r = client.post("/route", json={"text": "refund please"})
        assert r.status_code == 503 and "unavailable" in r.json()["detail"]
        assert r.headers["retry-after"] == "1"  # the reason goes to the server log only
    store.fail = False
    router.close()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("log: {durability: sometimes}", "durability"),
        ("log: {flush_interval_s: .nan}", "flush_interval_s"),
        ("log: {flush_interval_s: 0}", "flush_interval_s"),
        ("log: {ack_timeout_s: .inf}", "ack_timeout_s"),
    ],
)
def test_durability_settings_are_checked(tmp_path: Path, line: str, problem: str) -> None:
    directory = write_intents(tmp_path / "intents", TINY_INTENTS, ROUTER_YAML + line + "\n")
    with pytest.raises(ConfigError, match=rf"router\.yaml:\d+: .*{problem}"):
        load_intents(directory)


class SlowEventStore(CountingStore):
    """A store whose event writes fail while ``fail_events`` is set."""

    fail_events = False

    def write_events(self, entries: Sequence[EventEntry]) -> None:
        if self.fail_events:
            raise LogStoreError("disk unplugged", self.url)
        super().write_events(entries)


def _events_router(tmp_path: Path, durability: str, store: MemoryStore) -> Router:
    # async: a batch waits 30 s to fill, long enough to see an event is not written yet.
    yaml = ROUTER_YAML + f"log: {{durability: {durability}, flush_interval_s: 30}}\n"
    directory = write_intents(tmp_path / "events", TINY_INTENTS, yaml)
    return Router.in_memory(load_intents(directory), HashingEncoder(), log=store)


def test_ack_commits_failover_and_answer_events_before_returning(tmp_path: Path) -> None:
    store = SlowEventStore()
    with _events_router(tmp_path, "ack", store) as router:
        decision = router.route("refund please")
        router.failover(decision.id, decision.model)
        router.escalate("I am not sure.", decision_id=decision.id)
        # Straight from the store, no flush: both are committed already.
        kinds = [e.kind for e in store.events(decision_id=decision.id)]
        assert kinds == ["failover", "escalation"]


def test_async_queues_events_off_the_request_path(tmp_path: Path) -> None:
    store = SlowEventStore()
    with _events_router(tmp_path, "async", store) as router:
        assert router.logger is not None
        decision = router.route("refund please")
        assert router.logger.flush(timeout=10)
        router.failover(decision.id, decision.model)
        assert store.events(decision_id=decision.id) == []  # still queued
        assert router.logger.flush(timeout=10)
        assert [e.kind for e in store.events(decision_id=decision.id)] == ["failover"]


def test_an_event_that_cannot_be_committed_is_a_503(tmp_path: Path) -> None:
    store = SlowEventStore()
    router = _events_router(tmp_path, "ack", store)
    assert router.logger is not None
    router.logger.ack_timeout_s = 0.3
    with TestClient(create_app(router=router)) as client:
        decision = client.post("/route", json={"text": "refund please"}).json()
        store.fail_events = True
        failed = {"decision_id": decision["id"], "failed": [decision["model"]]}
        r = client.post("/next-model", json=failed)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        r = client.post("/escalate", json={"answer": "no idea", "decision_id": decision["id"]})
        assert r.status_code == 503, r.text
        store.fail_events = False
    router.close()
