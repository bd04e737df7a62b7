"""The log summaries computed in the database agree with the row-by-row report, on
SQLite and (with MODELTRIAGE_TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import dataclasses
import math
from datetime import timedelta
from pathlib import Path

import pytest

from modeltriage import load_intents
from modeltriage.log.aggregate import checked_plans_in, summarise_store
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry
from modeltriage.log.memory import MemoryStore
from modeltriage.log.open import open_store
from modeltriage.log.report import LogSummary, checked_plans, summarise
from modeltriage.log.store import LogStore

from .test_decisionlog import T0, make_entry, postgres_url  # noqa: F401  (a fixture)


def _entries() -> list[LogEntry]:
    entries = []
    for n in range(40):
        entry = make_entry(n, seconds=60 * n)
        entry = dataclasses.replace(
            entry,
            tier=("small", "mid", "flagship")[n % 3],
            model=("small-a", "mid-a", "big-a")[n % 3],
            reason=("confident", "low_margin")[n % 2],
            cascaded=n % 4 == 0,
            cascade_to="big-a" if n % 5 == 0 else None,
            estimated_cost_usd=0.001 * (n + 1),
            input_tokens=None if n % 3 == 0 else 10 + n % 7,
            text=None if n % 9 == 0 else "x" * (5 + n),
        )
        entries.append(entry)
    return entries


def _fill(store: LogStore) -> list[LogEntry]:
    entries = _entries()
    store.write_decisions(entries)
    for n, entry in enumerate(entries[::3]):
        store.write_feedback(FeedbackEntry(entry.decision_id, 0.25 * (n % 5), "user", None, T0))
    events = []
    for n, entry in enumerate(entries[::2]):
        kind = "escalation" if n % 2 == 0 else "failover"
        detail = "escalate: hedged" if n % 4 == 0 else "keep"
        to_model = None if n % 3 == 0 else "big-a"
        at = entry.created_at + timedelta(seconds=5)
        events.append(EventEntry(kind, entry.model, to_model, detail, entry.decision_id, at))
    events.append(EventEntry("failover", "mid-a", None, "no id", None, T0))
    store.write_events(events)
    return entries


def _same(got: LogSummary, want: LogSummary) -> None:
    for name, value in dataclasses.asdict(want).items():
        found = getattr(got, name)
        if isinstance(value, float):
            assert math.isclose(found, value, rel_tol=1e-9), name
        elif isinstance(value, dict):
            assert found.keys() == value.keys(), name
            assert all(math.isclose(found[k], v, rel_tol=1e-9) for k, v in value.items()), name
        else:
            assert found == value, name


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LogStore:
    if request.param == "sqlite":
        url = str(tmp_path / "log.db")
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_store(url)
    request.addfinalizer(opened.close)
    return opened


@pytest.mark.parametrize("since_minutes", [None, 0, 17, 39, 1000])
def test_sql_summary_matches_the_row_report(
    store: LogStore, tiny_dir: Path, since_minutes: int | None
) -> None:
    config = load_intents(tiny_dir).config
    _fill(store)
    since = None if since_minutes is None else T0 + timedelta(minutes=since_minutes)
    want = summarise(
        store.decisions(since=since), store.feedback(), config, store.events(since=since)
    )
    _same(summarise_store(store, config, since), want)


def test_checked_plans_in_the_database(store: LogStore, tiny_dir: Path) -> None:
    config = load_intents(tiny_dir).config
    _fill(store)
    want = checked_plans(store.decisions(), store.events(), config)
    assert want.checked > 0
    assert checked_plans_in(store, config) == want


def test_an_empty_log_and_the_memory_store(tiny_dir: Path, tmp_path: Path) -> None:
    config = load_intents(tiny_dir).config
    empty = open_store(str(tmp_path / "empty.db"))
    try:
        assert summarise_store(empty, config).requests == 0
        assert checked_plans_in(empty, config).escalation_rate is None
    finally:
        empty.close()
    memory = MemoryStore()
    _fill(memory)
    want = summarise(memory.decisions(), memory.feedback(), config, memory.events())
    _same(summarise_store(memory, config), want)
