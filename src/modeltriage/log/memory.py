"""The in-memory decision log store: the :class:`~modeltriage.log.store.LogStore`
contract with no I/O, deterministic, for tests and ``memory:``."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from modeltriage.errors import LogStoreError, UnknownDecisionError
from modeltriage.log.entries import (
    EventEntry,
    FeedbackEntry,
    LogEntry,
    _as_utc,
    _utcnow,
    check_query,
)
from modeltriage.log.migrations import SQLITE_MIGRATIONS
from modeltriage.log.urls import MEMORY_URL


class MemoryStore:
    """The deterministic in-memory store: same contract, no I/O. For tests."""

    def __init__(self) -> None:
        self.url = MEMORY_URL
        self._lock = threading.Lock()
        self._decisions: dict[str, LogEntry] = {}
        self._feedback: list[FeedbackEntry] = []
        self._events: list[EventEntry] = []
        self._health: dict[str, datetime] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise LogStoreError("the store is closed", self.url)

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        with self._lock:
            self._check_open()
            for entry in entries:
                self._decisions.setdefault(entry.decision_id, entry)

    def write_feedback(self, entry: FeedbackEntry) -> None:
        with self._lock:
            self._check_open()
            if entry.decision_id not in self._decisions:
                raise UnknownDecisionError(entry.decision_id)
            self._feedback.append(entry)

    def decisions(
        self, *, limit: int | None = None, since: datetime | None = None
    ) -> list[LogEntry]:
        since = check_query(limit, since)
        with self._lock:
            self._check_open()
            # Dicts keep insertion order, so reversing it breaks created_at ties newest
            # first, as the SQL stores do with their sequence column.
            entries = list(reversed(self._decisions.values()))
        entries.sort(key=lambda e: e.created_at, reverse=True)
        if since is not None:
            entries = [e for e in entries if e.created_at >= since]
        return entries if limit is None else entries[:limit]

    def feedback(self, decision_id: str | None = None) -> list[FeedbackEntry]:
        with self._lock:
            self._check_open()
            rows = [f for f in self._feedback if decision_id in (None, f.decision_id)]
        return sorted(rows, key=lambda f: f.created_at)

    def decision(self, decision_id: str) -> LogEntry | None:
        with self._lock:
            self._check_open()
            return self._decisions.get(decision_id)

    def write_events(self, entries: Sequence[EventEntry]) -> None:
        with self._lock:
            self._check_open()
            known = {e.event_id for e in self._events}
            for entry in entries:
                if entry.event_id not in known:
                    known.add(entry.event_id)
                    self._events.append(entry)

    def events(
        self, *, decision_id: str | None = None, since: datetime | None = None
    ) -> list[EventEntry]:
        since = check_query(None, since)
        with self._lock:
            self._check_open()
            rows = [e for e in self._events if decision_id in (None, e.decision_id)]
        if since is not None:
            rows = [e for e in rows if e.created_at >= since]
        return sorted(rows, key=lambda e: e.created_at)

    def mark_unhealthy(self, model: str, until: datetime) -> None:
        until = _as_utc(until, "until")
        with self._lock:
            self._check_open()
            self._prune(_utcnow())
            self._health[model] = until

    def _prune(self, now: datetime) -> None:
        for expired in [m for m, t in self._health.items() if t <= now]:
            del self._health[expired]

    def clear_unhealthy(self, model: str) -> bool:
        with self._lock:
            self._check_open()
            return self._health.pop(model, None) is not None

    def check_writable(self) -> None:
        with self._lock:
            self._check_open()
            self._prune(_utcnow())

    def unhealthy_until(self, now: datetime) -> dict[str, datetime]:
        now = _as_utc(now, "now")
        with self._lock:
            self._check_open()
            return {m: t for m, t in sorted(self._health.items()) if t > now}

    def schema_version(self) -> int:
        return len(SQLITE_MIGRATIONS)

    def close(self) -> None:
        self._closed = True
