"""The decision log: stores (memory, SQLite, PostgreSQL), migrations, feedback, the logger.

The PostgreSQL cases run when MODELTRIAGE_TEST_POSTGRES_URL is set; each gets a fresh
schema that is dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from modeltriage import Decision, MissingDependencyError, ModelTriageError
from modeltriage.core.config import LogSettings
from modeltriage.errors import InvalidEntryError, LogStoreError, UnknownDecisionError
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry
from modeltriage.log.memory import MemoryStore
from modeltriage.log.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, Migration
from modeltriage.log.open import open_store
from modeltriage.log.postgres import PostgresStore
from modeltriage.log.sqlite import SQLiteStore
from modeltriage.log.store import LogStore, write_entries
from modeltriage.log.urls import (
    LOG_URL_ENV,
    configured_log_url,
    mask_url,
    resolve_url,
    sqlite_path,
)
from modeltriage.log.writer import DecisionLogger, read_spool, write_spool

PG_ENV = "MODELTRIAGE_TEST_POSTGRES_URL"
PG_HOWTO = f'set {PG_ENV} to run the PostgreSQL cases: eval "$(bash scripts/ci_postgres.sh)"'
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
LATEST = len(SQLITE_MIGRATIONS)
WAIT = 10.0  # generous upper bound for waits that normally end in milliseconds


def make_decision(n: int = 0, **overrides: Any) -> Decision:
    fields: dict[str, Any] = {
        "id": f"d{n:04d}",
        "intent": "refund",
        "runner_up": "hours",
        "difficulty": "moderate",
        "tier": "mid",
        "model": "mid-a",
        "fallbacks": ["big-a"],
        "confidence": 0.8125,
        "margin": 0.125,
        "cascaded": False,
        "reason": "confident",
        "explanation": "nearest exemplars are refunds",
        "input_tokens": 12,
        "estimated_cost_usd": 0.00042,
        "index_version": "abc123",
        "latency_ms": 3.25,
    }
    fields.update(overrides)
    return Decision(**fields)


def make_entry(n: int = 0, *, seconds: float | None = None, **kwargs: Any) -> LogEntry:
    at = T0 + timedelta(seconds=n if seconds is None else seconds)
    return LogEntry.from_decision(make_decision(n), f"request number {n}", at=at, **kwargs)


def make_entries(count: int) -> list[LogEntry]:
    return [make_entry(n) for n in range(count)]


# --------------------------------------------------------------------------- fixtures


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose tables land in a schema of their own, dropped after the test."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_HOWTO)
    import psycopg

    schema = f"mt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _url_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "memory":
        return "memory:"
    if kind == "sqlite":
        return f"sqlite://{tmp_path / 'log' / 'decisions.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request.param, tmp_path, request)


@pytest.fixture(params=["sqlite", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request.param, tmp_path, request)


@pytest.fixture
def store(store_url: str) -> Iterator[LogStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def open_sql(
    url: str, migrations: Sequence[Migration] | None = None
) -> SQLiteStore | PostgresStore:
    """A SQL store that knows only ``migrations`` (default: all of this dialect's)."""
    if url.startswith("postgresql://"):
        return PostgresStore(url, migrations=migrations or POSTGRES_MIGRATIONS)
    path = sqlite_path(url)
    assert path is not None
    return SQLiteStore(path, migrations=migrations or SQLITE_MIGRATIONS)


def migrations_for(url: str) -> tuple[Migration, ...]:
    return POSTGRES_MIGRATIONS if url.startswith("postgresql://") else SQLITE_MIGRATIONS


def raw_sql(url: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run one statement outside the store (for what the store itself would never do)."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            cursor = pg.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []
    path = sqlite_path(url)
    assert path is not None
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------- entries


def test_entry_from_decision_copies_every_field() -> None:
    decision = make_decision(7, cascaded=True, reason="low_margin", margin=None, runner_up=None)
    entry = LogEntry.from_decision(decision, "héllo", metadata={"tenant": "acme"}, at=T0)
    assert entry.decision_id == "d0007"
    assert entry.created_at == T0
    assert entry.text == "héllo"
    assert entry.text_sha256 == hashlib.sha256("héllo".encode()).hexdigest()
    assert (entry.intent, entry.runner_up, entry.difficulty) == ("refund", None, "moderate")
    assert (entry.tier, entry.model, entry.reason) == ("mid", "mid-a", "low_margin")
    assert (entry.confidence, entry.margin, entry.cascaded) == (0.8125, None, True)
    assert (entry.estimated_cost_usd, entry.latency_ms) == (0.00042, 3.25)
    assert entry.index_version == "abc123"
    assert entry.metadata == {"tenant": "acme"}


def test_entry_time_defaults_to_now_and_is_normalised_to_utc() -> None:
    before = datetime.now(timezone.utc)
    entry = LogEntry.from_decision(make_decision(), "x")
    assert before <= entry.created_at <= datetime.now(timezone.utc)
    plus_two = timezone(timedelta(hours=2))
    shifted = LogEntry.from_decision(make_decision(), "x", at=T0.astimezone(plus_two))
    assert shifted.created_at == T0
    assert shifted.created_at.utcoffset() == timedelta(0)


def test_hash_only_mode_keeps_no_text() -> None:
    entry = LogEntry.from_decision(make_decision(), "my card number is 4111", store_text=False)
    assert entry.text is None
    assert entry.text_sha256 == hashlib.sha256(b"my card number is 4111").hexdigest()


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"tags": ["a"]}, "must be a string, number, boolean or null, got list"),
        ({"score": math.nan}, "finite"),
        ({"score": math.inf}, "finite"),
        ({1: "x"}, "keys must be strings"),
    ],
)
def test_entry_rejects_metadata_that_would_not_round_trip(metadata: Any, fragment: str) -> None:
    with pytest.raises(InvalidEntryError, match=fragment):
        LogEntry.from_decision(make_decision(), "x", metadata=metadata)


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidEntryError, match="timezone-aware"):
        LogEntry.from_decision(make_decision(), "x", at=datetime(2025, 1, 1))
    with pytest.raises(InvalidEntryError, match="timezone-aware"):
        FeedbackEntry("d0000", 0.5, "user", created_at=datetime(2025, 1, 1))


@pytest.mark.parametrize("quality", [-0.01, 1.01, math.nan, math.inf, True, "0.5"])
def test_feedback_quality_must_be_from_zero_to_one(quality: Any) -> None:
    with pytest.raises(InvalidEntryError, match="quality") as info:
        FeedbackEntry("d0000", quality, "user")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ModelTriageError)


@pytest.mark.parametrize("source", ["", "   ", "x" * 65])
def test_feedback_source_must_be_a_short_string(source: str) -> None:
    with pytest.raises(InvalidEntryError, match="source"):
        FeedbackEntry("d0000", 0.5, source)


def test_feedback_edges_and_ints_are_accepted() -> None:
    assert FeedbackEntry("d0000", 0, "judge").quality == 0.0
    assert FeedbackEntry("d0000", 1, " user ").source == "user"


# --------------------------------------------------------------------------- URLs


def test_open_store_picks_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_store("memory:"), MemoryStore)
    opened = [
        open_store(f"sqlite://{tmp_path / 'abs.db'}"),
        open_store("sqlite:relative.db"),
        open_store(str(tmp_path / "deep" / "er" / "plain.db")),
    ]
    for store in opened:
        assert isinstance(store, SQLiteStore)
        store.close()
    assert (tmp_path / "abs.db").exists()
    assert (tmp_path / "relative.db").exists()
    assert (tmp_path / "deep" / "er" / "plain.db").exists()
    assert opened[0].url == f"sqlite://{tmp_path / 'abs.db'}"


def test_unsupported_urls_are_refused_with_the_password_masked() -> None:
    with pytest.raises(LogStoreError, match="unsupported log URL") as info:
        open_store("mysql://app:hunter2@db.internal/log")
    assert "hunter2" not in str(info.value)
    assert "mysql://app:***@db.internal/log" in str(info.value)


def test_mask_url() -> None:
    assert mask_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("postgresql://u@h/db?password=pw&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert mask_url("postgresql://u:p%40ss@h1:1,h2:2/db") == "postgresql://u:***@h1:1,h2:2/db"
    assert mask_url("sqlite:///var/log.db") == "sqlite:///var/log.db"


def test_resolve_url_anchors_relative_sqlite_paths(tmp_path: Path) -> None:
    assert resolve_url("log.db", tmp_path) == str(tmp_path / "log.db")
    assert resolve_url("sqlite:log.db", tmp_path) == str(tmp_path / "log.db")
    assert resolve_url("/abs/log.db", tmp_path) == "/abs/log.db"
    assert resolve_url("postgresql://h/db", tmp_path) == "postgresql://h/db"
    assert resolve_url("memory:", tmp_path) == "memory:"


@pytest.mark.parametrize(
    ("explicit", "env", "configured", "expected"),
    [
        # Logging off: nothing set anywhere.
        (None, None, None, None),
        (None, "", None, None),
        # router.yaml's log.url, a relative SQLite path anchored at the intents.
        (None, None, "log.db", "{base}/log.db"),
        (None, None, "sqlite:log.db", "{base}/log.db"),
        (None, None, "/abs/log.db", "/abs/log.db"),
        (None, None, "memory:", "memory:"),
        # The environment overrides router.yaml, unless it is empty.
        (None, "env.db", "log.db", "{base}/env.db"),
        (None, "postgresql://u:pw@h/db", "log.db", "postgresql://u:pw@h/db"),
        (None, "", "log.db", "{base}/log.db"),
        # An explicit URL overrides both, even when empty (open_store then refuses it).
        ("cli.db", "env.db", "log.db", "{base}/cli.db"),
        ("memory:", "env.db", None, "memory:"),
        ("", "env.db", "log.db", ""),
    ],
)
def test_configured_log_url_precedence(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    explicit: str | None,
    env: str | None,
    configured: str | None,
    expected: str | None,
) -> None:
    if env is None:
        monkeypatch.delenv(LOG_URL_ENV, raising=False)
    else:
        monkeypatch.setenv(LOG_URL_ENV, env)
    settings = LogSettings(url=configured)
    want = None if expected is None else expected.format(base=tmp_path)
    assert configured_log_url(settings, tmp_path, explicit) == want
    assert configured_log_url(settings, str(tmp_path), explicit) == want


def test_the_log_url_variable_keeps_its_name() -> None:
    # Deployments set it; renaming it would silently turn their logging off.
    assert LOG_URL_ENV == "MODELTRIAGE_LOG_URL"


def test_sqlite_that_cannot_be_created_names_the_url(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LogStoreError, match="cannot open") as info:
        open_store(str(blocker / "log.db"))
    assert str(blocker / "log.db") in str(info.value)


def test_postgres_without_psycopg_asks_for_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"modeltriage\[postgres\]"):
        open_store("postgresql://u:pw@127.0.0.1:1/db")


def test_unreachable_postgres_is_a_log_store_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(LogStoreError, match="cannot connect") as info:
        open_store("postgresql://app:hunter2@127.0.0.1:1/db?connect_timeout=2")
    assert "hunter2" not in str(info.value)
    assert "app:***@127.0.0.1:1" in str(info.value)


# --------------------------------------------------------------------------- store contract


def test_decisions_round_trip_newest_first(store: LogStore) -> None:
    metadata = {"tenant": "acme", "step": 3, "temperature": 0.5, "retry": True, "parent": None}
    first = make_entry(0, metadata=metadata)
    second = make_entry(1, store_text=False)
    # Same instant as `second`: ties go to the one written last.
    third = LogEntry.from_decision(make_decision(2), "third", at=second.created_at)
    store.write_decisions([first, second])
    store.write_decisions([third])
    assert store.decisions() == [third, second, first]
    back = store.decisions()[-1]
    assert back.metadata == metadata
    assert {k: type(v) for k, v in back.metadata.items()} == {
        k: type(v) for k, v in metadata.items()
    }
    assert back.created_at.tzinfo is not None
    assert store.schema_version() == LATEST


def test_hash_only_entries_store_no_text(store: LogStore) -> None:
    store.write_decisions([make_entry(0, store_text=False)])
    (back,) = store.decisions()
    assert back.text is None
    assert back.text_sha256 == hashlib.sha256(b"request number 0").hexdigest()


def test_writing_an_id_again_is_ignored(store: LogStore) -> None:
    entry = make_entry(0)
    changed = LogEntry.from_decision(make_decision(0, model="big-a"), "other", at=T0)
    store.write_decisions([entry, entry])
    store.write_decisions([changed, make_entry(1)])
    assert [e.decision_id for e in store.decisions()] == ["d0001", "d0000"]
    assert store.decisions()[1] == entry


def test_limit_and_since(store: LogStore) -> None:
    store.write_decisions(make_entries(5))
    assert [e.decision_id for e in store.decisions(limit=2)] == ["d0004", "d0003"]
    since = T0 + timedelta(seconds=3)
    assert [e.decision_id for e in store.decisions(since=since)] == ["d0004", "d0003"]
    assert store.decisions(limit=0) == []
    with pytest.raises(InvalidEntryError):
        store.decisions(limit=-1)
    with pytest.raises(InvalidEntryError):
        store.decisions(since=datetime(2025, 1, 1))


def test_awkward_text_is_stored(store: LogStore) -> None:
    text = "nul\x00 byte, lone \ud800 surrogate, emoji 🚀"
    entry = LogEntry.from_decision(make_decision(), text, metadata={"k": "v\x00"}, at=T0)
    store.write_decisions([entry])
    (back,) = store.decisions()
    assert back.text_sha256 == entry.text_sha256
    assert back.text is not None and back.text.endswith("emoji 🚀")


def test_feedback_for_an_unknown_decision_is_refused(store: LogStore) -> None:
    with pytest.raises(UnknownDecisionError, match="'nope'"):
        store.write_feedback(FeedbackEntry("nope", 0.5, "user"))
    assert store.feedback() == []


def test_repeated_feedback_keeps_every_row_oldest_first(store: LogStore) -> None:
    store.write_decisions(make_entries(2))
    rows = [
        FeedbackEntry("d0000", 0.25, "judge", model="mid-a", created_at=T0 + timedelta(minutes=2)),
        FeedbackEntry("d0000", 1.0, "user", created_at=T0 + timedelta(minutes=1)),
        FeedbackEntry("d0001", 0.0, "user", created_at=T0 + timedelta(minutes=3)),
        FeedbackEntry("d0000", 0.25, "judge", model="mid-a", created_at=T0 + timedelta(minutes=2)),
    ]
    for row in rows:
        store.write_feedback(row)
    assert store.feedback("d0000") == [rows[1], rows[0], rows[3]]
    assert store.feedback() == [rows[1], rows[0], rows[3], rows[2]]
    assert store.feedback("d0009") == []


def test_a_closed_store_refuses_work(store_url: str) -> None:
    store = open_store(store_url)
    store.close()
    store.close()
    with pytest.raises(LogStoreError, match="closed"):
        store.write_decisions([make_entry()])
    with pytest.raises(LogStoreError, match="closed"):
        store.decisions()


def test_a_batch_is_one_transaction(sql_url: str) -> None:
    store = open_sql(sql_url)
    broken = make_entry(1)
    object.__setattr__(broken, "tier", None)  # violates NOT NULL in the database
    with pytest.raises(LogStoreError, match="cannot write 2 decisions"):
        store.write_decisions([make_entry(0), broken])
    assert store.decisions() == []
    store.write_decisions([make_entry(0)])
    assert len(store.decisions()) == 1
    store.close()


# --------------------------------------------------------------------------- lookup, events


def test_a_decision_is_found_by_id_with_its_chain_and_plan(store: LogStore) -> None:
    plan = {"escalate_to": "big-a", "tier": "flagship", "trigger": "margin"}
    decision = make_decision(
        7,
        fallbacks=["small-b", "big-a"],
        reason="cascade",
        cascade={**plan, "estimated_cost_usd": 0.01},
    )
    entry = LogEntry.from_decision(decision, "text", at=T0)
    store.write_decisions([entry, make_entry(1)])
    found = store.decision("d0007")
    assert found == entry
    assert found is not None
    assert (found.fallbacks, found.cascade_to) == (("small-b", "big-a"), "big-a")
    assert store.decision("d9999") is None


def test_events_round_trip_oldest_first(store: LogStore) -> None:
    store.write_decisions([make_entry(0)])
    events = [
        EventEntry("failover", "mid-a", "big-a", "timeout", "d0000", created_at=T0),
        EventEntry("escalation", "small-a", None, "keep: no signal", None, created_at=T0),
        # an event may name a decision this store never logged (another replica's chain)
        EventEntry("failover", "big-a", None, "no model left", "elsewhere", created_at=T0),
        EventEntry(
            "escalation", "mid-a", "big-a", "hedge \x00 \ud800", "d0000", created_at=T0 + HOUR
        ),
    ]
    store.write_events(events[2:])
    store.write_events(events[:2])
    store.write_events([])
    got = store.events()
    assert [e.detail for e in got] == ["no model left", "timeout", "keep: no signal", got[3].detail]
    assert [(e.kind, e.model, e.to_model) for e in store.events(decision_id="d0000")] == [
        ("failover", "mid-a", "big-a"),
        ("escalation", "mid-a", "big-a"),
    ]
    assert [e.model for e in store.events(since=T0 + HOUR)] == ["mid-a"]
    assert got[0] == events[2]


def test_health_marks_are_shared_through_the_store(store: LogStore) -> None:
    # Marks in the future: writing a mark prunes those already over by the wall clock.
    t0 = datetime.now(timezone.utc).replace(microsecond=0) + HOUR
    store.mark_unhealthy("mid-a", t0 + HOUR)
    store.mark_unhealthy("big-a", t0 + timedelta(minutes=5))
    assert store.unhealthy_until(t0) == {"big-a": t0 + timedelta(minutes=5), "mid-a": t0 + HOUR}
    # a later mark replaces the earlier one; expired marks are not reported
    store.mark_unhealthy("mid-a", t0 + timedelta(minutes=1))
    assert store.unhealthy_until(t0 + timedelta(minutes=2)) == {"big-a": t0 + timedelta(minutes=5)}
    assert store.unhealthy_until(t0 + HOUR) == {}


def test_health_marks_are_cleared_and_expired_ones_pruned(store: LogStore) -> None:
    now = datetime.now(timezone.utc)
    store.mark_unhealthy("small-a", now - timedelta(seconds=1))  # over already
    store.mark_unhealthy("mid-a", now + HOUR)
    assert store.clear_unhealthy("mid-a") is True
    assert store.clear_unhealthy("mid-a") is False
    assert store.unhealthy_until(now - HOUR) == {}  # the expired mark is gone, not hidden
    store.mark_unhealthy("big-a", now + HOUR)
    store.mark_unhealthy("small-b", now - timedelta(seconds=1))
    store.check_writable()  # prunes too
    assert list(store.unhealthy_until(now - HOUR)) == ["big-a"]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"kind": "retry"}, "event kind"),
        ({"model": ""}, "needs the model"),
        ({"decision_id": ""}, "decision_id"),
        ({"event_id": ""}, "event_id"),
    ],
)
def test_bad_events_are_refused(fields: dict[str, Any], fragment: str) -> None:
    values: dict[str, Any] = {"kind": "failover", "model": "a", "to_model": None, "detail": "x"}
    with pytest.raises(InvalidEntryError, match=fragment):
        EventEntry(**{**values, **fields})


def test_logger_writes_events_after_their_decisions() -> None:
    store = MemoryStore()
    logger = fast_logger(store)
    logger.log(make_decision(3), "text")
    logger.submit(EventEntry("failover", "mid-a", "big-a", "timeout", "d0003"))
    found = logger.decision("d0003")
    assert found is not None and found.fallbacks == ("big-a",)
    assert [e.to_model for e in store.events(decision_id="d0003")] == ["big-a"]
    assert logger.decision("missing", timeout=1) is None
    logger.close()


# --------------------------------------------------------------------------- migrations


def test_blank_database_gets_every_migration(sql_url: str) -> None:
    store = open_sql(sql_url)
    assert store.schema_version() == LATEST
    store.close()
    versions = raw_sql(sql_url, "SELECT version FROM schema_version ORDER BY version")
    assert [row[0] for row in versions] == list(range(1, LATEST + 1))


def _insert_v1_row(url: str, entry: LogEntry) -> None:
    postgres = url.startswith("postgresql://")
    values = (
        entry.decision_id,
        entry.created_at if postgres else entry.created_at.isoformat(timespec="microseconds"),
        entry.text,
        entry.text_sha256,
        entry.intent,
        entry.runner_up,
        entry.difficulty,
        entry.tier,
        entry.model,
        entry.confidence,
        entry.margin,
        entry.cascaded if postgres else int(entry.cascaded),
        entry.reason,
        entry.estimated_cost_usd,
        entry.latency_ms,
        entry.index_version,
    )
    columns = (
        "decision_id, created_at, text, text_sha256, intent, runner_up, difficulty, tier, "
        "model, confidence, margin, cascaded, reason, estimated_cost_usd, latency_ms, "
        "index_version"
    )
    marks = ", ".join(["%s"] * len(values))
    raw_sql(url, f"INSERT INTO decisions ({columns}) VALUES ({marks})", values)


def test_upgrade_from_version_1_keeps_rows(sql_url: str) -> None:
    old = open_sql(sql_url, migrations_for(sql_url)[:1])
    assert old.schema_version() == 1
    old.close()
    rows = make_entries(3)
    for row in rows:
        _insert_v1_row(sql_url, row)

    store = open_sql(sql_url)
    assert store.schema_version() == LATEST
    # Columns added after version 1 come back empty: no metadata, no token estimate, no
    # fallback chain, no cascade plan.
    old_rows = [
        dataclasses.replace(r, metadata={}, input_tokens=None, fallbacks=(), cascade_to=None)
        for r in rows
    ]
    assert store.decisions() == list(reversed(old_rows))
    store.write_feedback(FeedbackEntry("d0001", 0.75, "user", created_at=T0))
    assert [f.quality for f in store.feedback("d0001")] == [0.75]
    store.close()


def test_a_newer_schema_is_refused(sql_url: str) -> None:
    future = Migration(LATEST + 1, "from the future", ("CREATE TABLE future_thing (x INTEGER)",))
    newer = open_sql(sql_url, (*migrations_for(sql_url), future))
    newer.write_decisions([make_entry()])
    newer.close()
    with pytest.raises(LogStoreError, match=f"schema is version {LATEST + 1}") as info:
        open_sql(sql_url)
    message = str(info.value)
    assert "upgrade modeltriage" in message
    assert mask_url(sql_url) in message
    password = urlsplit(sql_url).password
    assert password is None or password not in message


def test_a_failing_migration_changes_nothing(sql_url: str) -> None:
    bad = Migration(
        LATEST + 1, "half-broken", ("CREATE TABLE half_done (x INTEGER)", "NOT VALID SQL")
    )
    with pytest.raises(LogStoreError, match="cannot create or migrate the schema"):
        open_sql(sql_url, (*migrations_for(sql_url), bad))
    store = open_sql(sql_url)
    assert store.schema_version() == LATEST
    store.close()
    with pytest.raises(Exception, match="half_done"):
        raw_sql(sql_url, "SELECT * FROM half_done")


def test_two_processes_opening_a_blank_database_at_once(sql_url: str) -> None:
    barrier = threading.Barrier(3)
    results: list[object] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened = open_sql(sql_url)
            results.append(opened.schema_version())
            opened.close()
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert results == [LATEST] * 3
    count = raw_sql(sql_url, "SELECT COUNT(*) FROM schema_version")
    assert count[0][0] == LATEST


def test_postgres_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    name = f"mt_reconnect_{uuid.uuid4().hex[:8]}"
    url = f"{postgres_url}&application_name={name}"
    store = open_store(url)
    store.write_decisions([make_entry(0)])
    sessions = "FROM pg_stat_activity WHERE application_name = %s"
    assert raw_sql(postgres_url, f"SELECT pg_terminate_backend(pid) {sessions}", (name,)) == [
        (True,)
    ]
    wait_until(lambda: raw_sql(postgres_url, f"SELECT pid {sessions}", (name,)) == [])
    with pytest.raises(LogStoreError):
        store.write_decisions([make_entry(1)])
    store.write_decisions([make_entry(1)])  # the logger's retry would do just this
    assert [e.decision_id for e in store.decisions()] == ["d0001", "d0000"]
    store.close()


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    open_store(str(tmp_path / "log.db")).close()
    assert raw_sql(f"sqlite://{tmp_path / 'log.db'}", "PRAGMA journal_mode") == [("wal",)]


# --------------------------------------------------------------------------- spool


def test_spool_round_trip(tmp_path: Path) -> None:
    entries = [make_entry(0, metadata={"n": 1, "x": 0.5}), make_entry(1, store_text=False)]
    path = tmp_path / "spool" / "decisions.jsonl"
    write_spool(path, entries[:1])
    write_spool(path, entries[1:])
    assert read_spool(path) == entries


def test_spool_keeps_events_and_replays_them(tmp_path: Path) -> None:
    event = EventEntry("failover", "mid-a", "big-a", "timeout", "d0000", created_at=T0)
    entries = [make_entry(0), event, make_entry(1)]
    path = tmp_path / "spool.jsonl"
    write_spool(path, entries)
    assert read_spool(path) == entries
    store = MemoryStore()
    write_entries(store, read_spool(path))
    write_entries(store, read_spool(path))  # a second replay writes nothing twice
    assert len(store.decisions()) == 2
    assert store.events(decision_id="d0000") == [event]


def test_an_event_written_twice_is_stored_once(store: LogStore) -> None:
    event = EventEntry("failover", "mid-a", "big-a", "timeout", "d0000", created_at=T0)
    store.write_events([event])
    store.write_events([event, EventEntry("failover", "big-a", None, "none left", "d0000")])
    assert store.events()[0].event_id == event.event_id
    assert len(store.events()) == 2


def test_a_corrupt_spool_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    write_spool(path, [make_entry()])
    with path.open("a") as handle:
        handle.write('{"decision_id": "x"}\n')
    with pytest.raises(LogStoreError, match="line 2"):
        read_spool(path)


# --------------------------------------------------------------------------- logger


class RecordingStore(MemoryStore):
    """Remembers the size of each batch it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        self.batches.append(len(entries))
        super().write_decisions(entries)


class GatedStore(MemoryStore):
    """Blocks every write until the test opens the gate: a store that cannot keep up."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        self.entered.set()
        self.gate.wait(WAIT)
        super().write_decisions(entries)


class FlakyStore(MemoryStore):
    """Fails the first ``failures`` writes, like a database restarting."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise LogStoreError("connection refused", self.url)
        super().write_decisions(entries)


def fast_logger(store: LogStore, **kwargs: Any) -> DecisionLogger:
    kwargs.setdefault("retry_initial_s", 0.001)
    kwargs.setdefault("retry_max_s", 0.01)
    return DecisionLogger(store, **kwargs)


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_flush_writes_everything_submitted_without_waiting_for_the_interval() -> None:
    store = MemoryStore()
    logger = DecisionLogger(store, flush_interval_s=30)
    entries = make_entries(10)
    assert all(logger.submit(e) for e in entries)
    started = time.monotonic()
    assert logger.flush(timeout=WAIT)
    assert time.monotonic() - started < 5
    assert len(store.decisions()) == 10
    assert (logger.written, logger.pending, logger.dropped, logger.errors) == (10, 0, 0, 0)
    logger.close()


def test_batches_respect_batch_size() -> None:
    store = RecordingStore()
    logger = DecisionLogger(store, batch_size=64, flush_interval_s=0.01)
    for entry in make_entries(300):
        logger.submit(entry)
    logger.close()
    assert sum(store.batches) == 300
    assert max(store.batches) <= 64


def test_close_drains_every_row_and_is_idempotent(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log.db"))
    logger = DecisionLogger(store, batch_size=50)
    entries = make_entries(500)
    for entry in entries:
        logger.submit(entry)
    logger.close()
    assert logger.closed and logger.written == 500 and logger.pending == 0
    logger.close()
    assert not logger.submit(make_entry(999))
    assert logger.dropped == 1
    reopened = open_store(str(tmp_path / "log.db"))
    assert len(reopened.decisions()) == 500
    reopened.close()
    with pytest.raises(LogStoreError, match="closed"):
        store.decisions()


def test_overload_drops_and_counts_instead_of_blocking() -> None:
    store = GatedStore()
    logger = DecisionLogger(store, queue_size=5, batch_size=1, flush_interval_s=0)
    assert logger.submit(make_entry(0))
    assert store.entered.wait(WAIT)  # the writer now holds entry 0 and is stuck
    started = time.monotonic()
    accepted = [logger.submit(make_entry(n)) for n in range(1, 9)]
    assert time.monotonic() - started < 1
    assert accepted == [True] * 5 + [False] * 3
    assert (logger.dropped, logger.pending) == (3, 6)
    store.gate.set()
    assert logger.flush(timeout=WAIT)
    assert logger.written == 6
    assert [e.decision_id for e in store.decisions()] == [f"d{n:04d}" for n in range(5, -1, -1)]
    logger.close()


def test_transient_failures_are_retried_without_losing_rows() -> None:
    store = FlakyStore(failures=3)
    logger = fast_logger(store)
    for entry in make_entries(20):
        logger.submit(entry)
    assert logger.flush(timeout=WAIT)
    assert logger.errors == 3
    assert isinstance(logger.last_error, LogStoreError)
    assert logger.written == 20
    assert len(store.decisions()) == 20
    logger.close()


def test_rows_a_dead_store_refuses_are_spooled_on_close(tmp_path: Path) -> None:
    store = FlakyStore(failures=10**9)
    spool = tmp_path / "spool.jsonl"
    logger = fast_logger(store, spool_path=spool, batch_size=4, close_attempts=2)
    entries = make_entries(10)
    for entry in entries:
        logger.submit(entry)
    wait_until(lambda: logger.errors >= 2)
    assert not logger.flush(timeout=0.05)
    logger.close()
    assert (logger.spooled, logger.written, logger.pending) == (10, 0, 0)
    assert sorted(read_spool(spool), key=lambda e: e.decision_id) == entries


def test_rows_lost_without_a_spool_are_reported_on_close() -> None:
    logger = fast_logger(FlakyStore(failures=10**9), close_attempts=1)
    for entry in make_entries(5):
        logger.submit(entry)
    with pytest.raises(LogStoreError, match="5 logged decisions could not be written"):
        logger.close()
    logger.close()


def test_close_with_a_stuck_store_spools_what_is_queued(tmp_path: Path) -> None:
    store = GatedStore()
    spool = tmp_path / "spool.jsonl"
    logger = DecisionLogger(store, batch_size=1, flush_interval_s=0, spool_path=spool)
    for entry in make_entries(4):
        logger.submit(entry)
    assert store.entered.wait(WAIT)
    with pytest.raises(LogStoreError, match="did not finish in time; 3 queued decisions"):
        logger.close(timeout=0.05)
    assert [e.decision_id for e in read_spool(spool)] == ["d0001", "d0002", "d0003"]
    store.gate.set()
    logger.close()


def test_feedback_through_the_logger_waits_for_its_decision() -> None:
    store = MemoryStore()
    logger = DecisionLogger(store, flush_interval_s=30)
    logger.log(make_decision(1), "refund please", metadata={"tenant": "acme"})
    logger.write_feedback(FeedbackEntry("d0001", 0.9, "user"))
    assert [f.quality for f in store.feedback("d0001")] == [0.9]
    with pytest.raises(UnknownDecisionError):
        logger.write_feedback(FeedbackEntry("never-routed", 0.9, "user"))
    logger.close()


def test_log_honours_hash_only_mode() -> None:
    store = MemoryStore()
    with DecisionLogger(store, store_text=False) as logger:
        assert logger.log(make_decision(), "secret text")
        assert logger.flush(timeout=WAIT)
        (entry,) = store.decisions()
    assert entry.text is None
    assert entry.text_sha256 == hashlib.sha256(b"secret text").hexdigest()
    assert logger.closed


def test_logger_end_to_end_from_many_threads(store_url: str) -> None:
    store = open_store(store_url)
    logger = DecisionLogger(store, batch_size=32, flush_interval_s=0.01)

    def produce(start: int) -> None:
        for n in range(start, start + 100):
            logger.submit(make_entry(n))

    threads = [threading.Thread(target=produce, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert logger.flush(timeout=WAIT)
    decisions = store.decisions()
    assert len(decisions) == 400
    assert decisions[0].decision_id == "d0399"
    logger.write_feedback(FeedbackEntry("d0399", 0.5, "judge"))
    assert len(store.feedback()) == 1
    logger.close()
