"""Decision logging wired through the router, the service and the CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, RouteOptions, Router, load_intents
from modeltriage.errors import LogStoreError, UnknownDecisionError
from modeltriage.http.app import create_app
from modeltriage.log.memory import MemoryStore
from modeltriage.log.open import open_store

from .conftest import Serve


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def logged_router(tiny_dir: Path, store: MemoryStore) -> Iterator[Router]:
    router = Router.in_memory(load_intents(tiny_dir), HashingEncoder(), exact_numpy=True, log=store)
    yield router
    router.close()


def flushed(router: Router) -> None:
    assert router.logger is not None and router.logger.flush(5)


def test_every_route_is_logged_with_metadata(logged_router: Router, store: MemoryStore) -> None:
    one = logged_router.route(
        "when do you open on sunday", RouteOptions(metadata={"tenant": "acme", "step": 2})
    )
    batch = logged_router.route_batch(
        ["refund my purchase please", "zzz"], RouteOptions(metadata={"tenant": "b"})
    )
    flushed(logged_router)
    entries = {e.decision_id: e for e in store.decisions()}
    assert set(entries) == {one.id, *(d.id for d in batch)}
    entry = entries[one.id]
    assert (entry.intent, entry.model, entry.tier, entry.reason) == (
        one.intent,
        one.model,
        one.tier,
        one.reason,
    )
    assert entry.text == "when do you open on sunday" and entry.metadata == {
        "tenant": "acme",
        "step": 2,
    }
    assert (
        entry.estimated_cost_usd == one.estimated_cost_usd
        and entry.index_version == one.index_version
    )


def test_hash_only_mode(tiny_dir: Path, store: MemoryStore) -> None:
    intent_set = load_intents(tiny_dir)
    private = intent_set.model_copy(
        update={
            "config": intent_set.config.model_copy(
                update={"log": intent_set.config.log.model_copy(update={"store_text": False})}
            )
        }
    )
    with Router.in_memory(private, HashingEncoder(), exact_numpy=True, log=store) as router:
        router.route("my secret question about refunds")
        flushed(router)
        (entry,) = store.decisions()
    assert entry.text is None and len(entry.text_sha256) == 64


def test_feedback(logged_router: Router, store: MemoryStore) -> None:
    decision = logged_router.route("refund my purchase please")
    # no explicit flush: feedback right after routing must find the queued decision
    logged_router.feedback(decision.id, 0.5, source="judge", model="mid-a")
    logged_router.feedback(decision.id, 1.0)
    rows = store.feedback(decision.id)
    assert [(f.quality, f.source, f.model) for f in rows] == [
        (0.5, "judge", "mid-a"),
        (1.0, "user", None),
    ]
    with pytest.raises(UnknownDecisionError):
        logged_router.feedback("nope", 1.0)


def test_feedback_without_a_log(fake_router: Router) -> None:
    with pytest.raises(LogStoreError, match="logging is off"):
        fake_router.feedback("x", 1.0)


@pytest.fixture
def client(logged_router: Router, serve: Serve) -> TestClient:
    return serve(logged_router)


def test_service_feedback(client: TestClient, store: MemoryStore) -> None:
    decision = client.post(
        "/route", json={"text": "refund my purchase please", "metadata": {"tenant": "t1"}}
    ).json()
    r = client.post(
        "/feedback", json={"decision_id": decision["id"], "quality": 0.8, "source": "user"}
    )
    assert r.status_code == 201 and r.json() == {
        "status": "recorded",
        "decision_id": decision["id"],
    }
    assert (
        client.post("/feedback", json={"decision_id": "unknown", "quality": 1}).status_code == 404
    )
    for bad in (
        {"decision_id": decision["id"], "quality": 1.5},
        {"decision_id": decision["id"], "quality": "good"},
        {"quality": 1},
    ):
        assert client.post("/feedback", json=bad).status_code == 422
    health = client.get("/healthz").json()["log"]
    assert health["store"] == "memory" and health["written"] >= 1 and health["dropped"] == 0
    assert store.decisions()[0].metadata == {"tenant": "t1"}


def test_service_rejects_bad_metadata(client: TestClient) -> None:
    r = client.post("/route", json={"text": "hi", "metadata": {"nested": {"a": 1}}})
    assert r.status_code == 422


def test_service_without_log_answers_503_to_feedback(fake_router: Router, serve: Serve) -> None:
    c = serve(fake_router)
    r = c.post("/feedback", json={"decision_id": "x", "quality": 1})
    assert r.status_code == 503 and "logging is off" in r.text
    assert c.get("/healthz").json()["log"] is None


@pytest.mark.real
def test_served_router_logs_to_sqlite_and_flushes_on_shutdown(
    shipped_copy: Path, shipped_router: Router, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "log.sqlite3"
    monkeypatch.setenv("MODELTRIAGE_LOG_URL", str(db))
    app = create_app(shipped_copy)  # the lifespan loads the router and owns its log
    with TestClient(app) as c:
        ids = [
            c.post("/route", json={"text": f"where is my order #{i}"}).json()["id"]
            for i in range(50)
        ]
    with sqlite3.connect(db) as conn:
        logged = {row[0] for row in conn.execute("select decision_id from decisions")}
    assert logged == set(ids)
    store = open_store(str(db))
    try:
        assert store.decisions(limit=1)[0].intent == "order_status"
    finally:
        store.close()
